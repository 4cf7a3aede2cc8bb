package archive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"golang.org/x/sys/unix"
)

type ent struct {
	hdr  tar.Header
	body string
}

var testTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

func reg(name, body string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: testTime}, body: body}
}

func dir(name string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: testTime}}
}

func symlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: testTime}}
}

func hardlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: testTime}}
}

// mkTar builds an uncompressed tar; it does not validate names (that is what we test).
func mkTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("writing test tar header %q: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := pgzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// snapshotTree describes every entry below dir (not following symlinks), except the subtree skip.
func snapshotTree(t testing.TB, dir, skip string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		out[p] = describe(t, p)
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", dir, err)
	}
	return out
}

func describe(t testing.TB, p string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	s := fmt.Sprintf("mode=%o uid=%d gid=%d nlink=%d rdev=%d mtime=%d.%d", st.Mode, st.Uid, st.Gid, st.Nlink, st.Rdev, st.Mtim.Sec, st.Mtim.Nsec)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		s += " sha=" + hex.EncodeToString(sum[:8])
	case unix.S_IFLNK:
		l, err := os.Readlink(p)
		if err != nil {
			t.Fatal(err)
		}
		s += " link=" + l
	}
	return s
}

// sandbox lays out base/{sentinel/file, l1/l2/l3/root} so that escapes of up to three ".." and
// absolute names pointing at the sentinel are detectable.
type sandbox struct {
	base, root, sentinel string
	before               map[string]string
}

func newSandbox(t testing.TB) *sandbox {
	t.Helper()
	base := t.TempDir()
	sb := &sandbox{base: base, root: filepath.Join(base, "l1", "l2", "l3", "root"), sentinel: filepath.Join(base, "sentinel")}
	if err := os.MkdirAll(sb.root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(sb.sentinel, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sb.sentinel, "file"), []byte("sentinel"), 0o644); err != nil {
		t.Fatal(err)
	}
	sb.before = snapshotTree(t, base, sb.root)
	return sb
}

// check fails the test if anything outside root changed, and proves root is removable: directly
// after a failed Apply, after restoring owner permissions after a successful one (a layer may
// legitimately make directories read-only, which stops a non-root owner from deleting them).
func (sb *sandbox) check(t testing.TB, applyErr error) {
	t.Helper()
	after := snapshotTree(t, sb.base, sb.root)
	var diffs []string
	for k, v := range after {
		if sb.before[k] != v {
			diffs = append(diffs, fmt.Sprintf("%s: %q -> %q", k, sb.before[k], v))
		}
	}
	for k := range sb.before {
		if _, ok := after[k]; !ok {
			diffs = append(diffs, k+": removed")
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Fatalf("apply changed things outside its root:\n%s", strings.Join(diffs, "\n"))
	}
	if applyErr == nil {
		makeRemovable(t, sb.root)
	}
	if err := os.RemoveAll(sb.root); err != nil {
		t.Fatalf("removing applied root (apply error: %v): %v", applyErr, err)
	}
	if err := os.MkdirAll(sb.root, 0o755); err != nil {
		t.Fatal(err)
	}
	sb.before = snapshotTree(t, sb.base, sb.root)
}

// makeRemovable gives the owner rwx on every directory below dir, so a non-root test can delete
// trees whose layers set read-only directory modes.
func makeRemovable(t testing.TB, dir string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		} else if err != nil && p != dir {
			_ = os.Chmod(p, 0o700) // unreadable: fix and let the next pass see inside
		}
		return nil
	})
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
}

// tempDir is t.TempDir that non-root tests can always delete after applying layers into it.
func tempDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	t.Cleanup(func() { makeRemovable(t, d) })
	return d
}
