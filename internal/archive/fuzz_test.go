package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func FuzzApply(f *testing.F) {
	seeds := [][]ent{
		{dir("a"), reg("a/f", "x"), symlink("a/l", "/"), hardlink("a/h", "a/f")},
		{symlink("l", "/"), reg("l/../../sentinel/file", "evil")},
		{symlink("s", "../sentinel"), reg("s/file", "evil")},
		{reg("../../sentinel/file", "evil"), reg("/abs", "x")},
		{hardlink("h", "../sentinel/file")},
		{dir("d"), reg("d/.wh..wh..opq", ""), reg(".wh.d", ""), reg("../.wh.sentinel", "")},
		{ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "p", Mode: 0o600}}},
	}
	for _, s := range seeds {
		b := mkTar(f, s...)
		f.Add(b, false)
		f.Add(b, true)
		f.Add(gzipBytes(f, b), false)
		f.Add(zstdBytes(f, b), true)
		f.Add(b[:len(b)/2], false)
	}
	f.Add([]byte{0x1f, 0x8b}, false)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, data []byte, overlay bool) {
		base := t.TempDir()
		root := filepath.Join(base, "root")
		sentinel := filepath.Join(base, "sentinel")
		for _, d := range []string{root, sentinel} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(sentinel, "file"), []byte("sentinel"), 0o644); err != nil {
			t.Fatal(err)
		}
		before := snapshotTree(t, base, root)
		// NoLchown: as root, chown is safe but pointless here and the seeds' ids are fine either way.
		_, applyErr := Apply(context.Background(), root, bytes.NewReader(data), ApplyOptions{Overlay: overlay, NoLchown: true})
		after := snapshotTree(t, base, root)
		if len(after) != len(before) {
			t.Fatalf("entries outside root changed: %d -> %d", len(before), len(after))
		}
		for k, v := range before {
			if after[k] != v {
				t.Fatalf("%s changed outside root: %q -> %q", k, v, after[k])
			}
		}
		if applyErr == nil {
			makeRemovable(t, root) // a successful layer may make directories read-only
		}
		if err := os.RemoveAll(root); err != nil {
			t.Fatalf("root not removable after Apply (error %v): %v", applyErr, err)
		}
	})
}

func FuzzDetectCompression(f *testing.F) {
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0})
	f.Add([]byte("ustar\x00"))
	f.Add(gzipBytes(f, []byte("hello")))
	f.Add(zstdBytes(f, []byte("hello")))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := DetectCompression(data)
		rc, got, err := Decompress(bytes.NewReader(data))
		if err != nil {
			return
		}
		defer rc.Close()
		if got != c {
			t.Fatalf("Decompress detected %v, DetectCompression %v", got, c)
		}
		// Bounded: a tiny input may legally expand a lot.
		_, _ = io.Copy(io.Discard, io.LimitReader(rc, 1<<20))
	})
}
