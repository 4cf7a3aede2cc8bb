package image

import (
	"bufio"
	"errors"
	"fmt"
	"github.com/berth-dev/berth/internal/snapshot"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
)

// copyBufSize is the buffer used when streaming blobs: large enough that hashing and disk
// writes run at device speed rather than syscall speed.
const copyBufSize = 1 << 20

// contentStore holds blobs addressed by their sha256 digest. Every blob is written to a temp
// file under ingest/, hashed while copied, fsynced, verified and renamed into place, so a blob
// under blobs/ is always complete and correct.
type contentStore struct {
	blobs  string // Root/content/blobs/sha256
	ingest string // Root/content/ingest
}

func newContentStore(root string) (*contentStore, error) {
	c := &contentStore{
		blobs:  filepath.Join(root, "content", "blobs", "sha256"),
		ingest: filepath.Join(root, "content", "ingest"),
	}
	for _, d := range []string{c.blobs, c.ingest} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("content store: %w", err)
		}
	}
	return c, nil
}

func (c *contentStore) path(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
		return "", errInvalid("invalid blob digest %q", d)
	}
	return filepath.Join(c.blobs, d.Encoded()), nil
}

// stat returns the size of blob d, or an error wrapping fs.ErrNotExist.
func (c *contentStore) stat(d digest.Digest) (int64, error) {
	p, err := c.path(d)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (c *contentStore) open(d digest.Digest) (*os.File, error) {
	p, err := c.path(d)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	return f, nil
}

// readAll reads a small blob (manifest, config, index) into memory, refusing blobs above max.
func (c *contentStore) readAll(d digest.Digest, max int64) ([]byte, error) {
	f, err := c.open(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	if int64(len(b)) > max {
		return nil, errInvalid("blob %s is larger than %d bytes", d, max)
	}
	return b, nil
}

func (c *contentStore) delete(d digest.Digest) error {
	p, err := c.path(d)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove blob %s: %w", d, err)
	}
	return nil
}

// walk calls fn for every blob in the store. Files that are not digests are ignored.
func (c *contentStore) walk(fn func(digest.Digest) error) error {
	ents, err := os.ReadDir(c.blobs)
	if err != nil {
		return fmt.Errorf("list blobs: %w", err)
	}
	for _, e := range ents {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if d.Validate() != nil {
			continue
		}
		if err := fn(d); err != nil {
			return err
		}
	}
	return nil
}

// cleanIngest removes leftovers of interrupted writes (a daemon killed mid-load).
func (c *contentStore) cleanIngest() error {
	ents, err := os.ReadDir(c.ingest)
	if err != nil {
		return fmt.Errorf("list ingest: %w", err)
	}
	for _, e := range ents {
		p := filepath.Join(c.ingest, e.Name())
		if strings.HasPrefix(e.Name(), unpackMountPrefix) {
			// A layer was being unpacked through a mount when the daemon died.
			_ = snapshot.UnmountAll(p)
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("clean ingest: %w", err)
		}
	}
	return nil
}

// blobWriter streams one blob into the store. Write hashes and buffers; commit verifies and
// publishes; close discards whatever was not committed.
type blobWriter struct {
	c      *contentStore
	f      *os.File
	bw     *bufio.Writer
	dg     digest.Digester
	n      int64
	closed bool
}

func (c *contentStore) writer() (*blobWriter, error) {
	f, err := os.CreateTemp(c.ingest, "blob-")
	if err != nil {
		return nil, fmt.Errorf("create ingest file: %w", err)
	}
	return &blobWriter{c: c, f: f, bw: bufio.NewWriterSize(f, copyBufSize), dg: digest.SHA256.Digester()}, nil
}

func (w *blobWriter) Write(p []byte) (int, error) {
	n, err := w.bw.Write(p)
	w.dg.Hash().Write(p[:n])
	w.n += int64(n)
	return n, err
}

// commit finishes the blob. When expected is not empty the content must match it, otherwise
// the temp file is removed and an invalid-argument error returned.
// pin, when set, is called with the digest before the blob becomes visible, so that the caller
// can lease it before a concurrent GC could see it unreferenced.
func (w *blobWriter) commit(expected digest.Digest, pin func(digest.Digest)) (digest.Digest, int64, error) {
	defer w.close()
	if err := w.bw.Flush(); err != nil {
		return "", 0, fmt.Errorf("write blob: %w", err)
	}
	got := w.dg.Digest()
	if expected != "" && got != expected {
		return "", 0, errInvalid("blob digest mismatch: expected %s, got %s", expected, got)
	}
	p, err := w.c.path(got)
	if err != nil {
		return "", 0, err
	}
	if pin != nil {
		pin(got)
	}
	if fi, err := os.Stat(p); err == nil && fi.Size() == w.n {
		// Already stored (content addressing makes it identical); skip the fsync and rename.
		return got, w.n, nil
	}
	if err := w.f.Sync(); err != nil {
		return "", 0, fmt.Errorf("sync blob: %w", err)
	}
	if err := w.f.Close(); err != nil {
		return "", 0, fmt.Errorf("close blob: %w", err)
	}
	w.closed = true
	if err := os.Chmod(w.f.Name(), 0o644); err != nil {
		return "", 0, fmt.Errorf("chmod blob: %w", err)
	}
	if err := os.Rename(w.f.Name(), p); err != nil {
		return "", 0, fmt.Errorf("publish blob: %w", err)
	}
	if err := syncDir(w.c.blobs); err != nil {
		return "", 0, err
	}
	return got, w.n, nil
}

// close discards the temp file; it is a no-op after a successful commit.
func (w *blobWriter) close() {
	if !w.closed {
		w.f.Close()
		w.closed = true
	}
	os.Remove(w.f.Name()) // fails harmlessly after a rename
}

// write copies r into the store, verifying it against expected when that is set.
func (c *contentStore) write(r io.Reader, expected digest.Digest, pin func(digest.Digest)) (digest.Digest, int64, error) {
	w, err := c.writer()
	if err != nil {
		return "", 0, err
	}
	defer w.close()
	buf := make([]byte, copyBufSize)
	if _, err := io.CopyBuffer(struct{ io.Writer }{w}, r, buf); err != nil {
		return "", 0, fmt.Errorf("write blob: %w", err)
	}
	return w.commit(expected, pin)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
