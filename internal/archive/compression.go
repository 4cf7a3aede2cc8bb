package archive

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// Compression is the compression of a layer blob.
type Compression int

// Supported compressions.
const (
	Uncompressed Compression = iota
	Gzip
	Zstd
)

// String returns the lower-case name of c as used in media types ("gzip", "zstd").
func (c Compression) String() string {
	switch c {
	case Uncompressed:
		return "uncompressed"
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	default:
		return fmt.Sprintf("Compression(%d)", int(c))
	}
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// DetectCompression sniffs magic bytes (gzip 1f8b, zstd 28b52ffd; anything else is uncompressed).
// b should hold at least the first 4 bytes of the stream.
func DetectCompression(b []byte) Compression {
	switch {
	case bytes.HasPrefix(b, gzipMagic):
		return Gzip
	case bytes.HasPrefix(b, zstdMagic):
		return Zstd
	default:
		return Uncompressed
	}
}

// Decompress wraps r, detecting compression by magic bytes. gzip is decoded with the parallel
// github.com/klauspost/pgzip, zstd with github.com/klauspost/compress/zstd. The caller must Close the
// result (it stops decoder goroutines); closing does not close r.
//
// Errors from r itself are passed through; errors the decoder raises about the data are reported
// as *corrupt* streams wrapping errdefs.ErrInvalidArgument.
func Decompress(r io.Reader) (io.ReadCloser, Compression, error) {
	br := bufio.NewReaderSize(&sourceReader{r: r}, 64<<10)
	magic, err := br.Peek(len(zstdMagic))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, Uncompressed, fmt.Errorf("reading stream header: %w", err)
	}
	c := DetectCompression(magic)
	switch c {
	case Gzip:
		zr, err := pgzip.NewReader(br)
		if err != nil {
			return nil, c, decompressErr(c, err)
		}
		return &decompressReader{r: zr, close: zr.Close, comp: c}, c, nil
	case Zstd:
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, c, decompressErr(c, err)
		}
		return &decompressReader{r: zr, close: func() error { zr.Close(); return nil }, comp: c}, c, nil
	default:
		return io.NopCloser(br), c, nil
	}
}

// sourceError marks an error returned by the caller's reader, so that it is not mistaken for
// corrupt compressed data.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

type sourceReader struct{ r io.Reader }

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = &sourceError{err: err}
	}
	return n, err
}

// decompressError is a decoder's complaint about the data (bad header, checksum, truncation).
type decompressError struct {
	comp Compression
	err  error
}

func (e *decompressError) Error() string {
	return fmt.Sprintf("corrupt %s stream: %v", e.comp, e.err)
}

func (e *decompressError) Unwrap() []error { return []error{errdefs.ErrInvalidArgument, e.err} }

func decompressErr(c Compression, err error) error {
	var se *sourceError
	if errors.As(err, &se) {
		return fmt.Errorf("reading %s stream: %w", c, err)
	}
	return &decompressError{comp: c, err: err}
}

type decompressReader struct {
	r     io.Reader
	close func() error
	comp  Compression
}

func (d *decompressReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		err = decompressErr(d.comp, err)
	}
	return n, err
}

func (d *decompressReader) Close() error { return d.close() }
