package archive

import (
	"bytes"
	"io"
	"testing"
)

func TestDetectCompression(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		want Compression
	}{
		{[]byte{0x1f, 0x8b, 8, 0}, Gzip},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd}, Zstd},
		{[]byte{0x28, 0xb5, 0x2f}, Uncompressed},
		{[]byte{0x1f}, Uncompressed},
		{nil, Uncompressed},
		{[]byte("ustar"), Uncompressed},
	} {
		if got := DetectCompression(c.in); got != c.want {
			t.Errorf("DetectCompression(%x) = %v, want %v", c.in, got, c.want)
		}
	}
	if Gzip.String() != "gzip" || Zstd.String() != "zstd" || Uncompressed.String() != "uncompressed" || Compression(9).String() != "Compression(9)" {
		t.Error("String")
	}
}

func TestDecompress(t *testing.T) {
	data := bytes.Repeat([]byte("layer data "), 10000)
	for want, in := range map[Compression][]byte{Uncompressed: data, Gzip: gzipBytes(t, data), Zstd: zstdBytes(t, data)} {
		rc, got, err := Decompress(bytes.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || got != want || !bytes.Equal(out, data) {
			t.Errorf("%v: got %v, %d bytes, %v", want, got, len(out), err)
		}
	}
	rc, c, err := Decompress(bytes.NewReader(nil))
	if err != nil || c != Uncompressed {
		t.Fatalf("empty stream: %v %v", c, err)
	}
	rc.Close()
}
