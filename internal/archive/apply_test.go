package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

func applyBytes(t *testing.T, dir string, b []byte, opts ApplyOptions) ApplyResult {
	t.Helper()
	res, err := Apply(context.Background(), dir, bytes.NewReader(b), opts)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return res
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

func TestApplyBasicAndDiffID(t *testing.T) {
	exe := reg("bin/tool", "#!/bin/sh\n")
	exe.hdr.Mode = 0o4755
	ro := dir("ro")
	ro.hdr.Mode = 0o555
	layer := mkTar(t, dir("bin"), exe, ro, reg("ro/f", "data"), symlink("bin/link", "/bin/tool"),
		hardlink("bin/hard", "bin/tool"), reg("implicit/parent/f", "p"),
		ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o640, ModTime: testTime}})
	want := digest.FromBytes(layer)
	for name, data := range map[string][]byte{"plain": layer, "gzip": gzipBytes(t, layer), "zstd": zstdBytes(t, layer)} {
		t.Run(name, func(t *testing.T) {
			d := tempDir(t)
			res := applyBytes(t, d, data, ApplyOptions{NoLchown: true})
			if res.DiffID != want {
				t.Errorf("DiffID %s, want sha256 of the uncompressed tar %s", res.DiffID, want)
			}
			if res.Size != int64(len("#!/bin/sh\n")+len("data")+len("p")) {
				t.Errorf("Size %d", res.Size)
			}
			if got := readFile(t, filepath.Join(d, "bin/hard")); got != "#!/bin/sh\n" {
				t.Errorf("hardlink content %q", got)
			}
			if a, b := lstat(t, filepath.Join(d, "bin/tool")), lstat(t, filepath.Join(d, "bin/hard")); a.Ino != b.Ino {
				t.Error("hardlink is not the same inode")
			}
			st := lstat(t, filepath.Join(d, "bin/tool"))
			if st.Mode&0o7777 != 0o4755 {
				t.Errorf("mode %o, want setuid 4755", st.Mode&0o7777)
			}
			if st.Mtim.Sec != testTime.Unix() {
				t.Errorf("mtime %d, want %d", st.Mtim.Sec, testTime.Unix())
			}
			if st := lstat(t, filepath.Join(d, "ro")); st.Mode&0o7777 != 0o555 || st.Mtim.Sec != testTime.Unix() {
				t.Errorf("dir mode %o mtime %d: final metadata not applied", st.Mode&0o7777, st.Mtim.Sec)
			}
			if l, _ := os.Readlink(filepath.Join(d, "bin/link")); l != "/bin/tool" {
				t.Errorf("symlink target %q", l)
			}
			if st := lstat(t, filepath.Join(d, "implicit/parent")); st.Mode&0o777 != 0o755 {
				t.Errorf("implicit parent mode %o", st.Mode&0o777)
			}
			if st := lstat(t, filepath.Join(d, "fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO || st.Mode&0o777 != 0o640 {
				t.Errorf("fifo mode %o", st.Mode)
			}
		})
	}
}

func TestApplyReplacesEntriesLikeDocker(t *testing.T) {
	d := tempDir(t)
	applyBytes(t, d, mkTar(t, dir("a"), reg("a/keep", "1"), reg("f", "file"), dir("g"), reg("g/x", "x")), ApplyOptions{NoLchown: true})
	// Second layer: dir over dir merges; file over dir replaces it; dir over file replaces it.
	applyBytes(t, d, mkTar(t, dir("a"), reg("a/new", "2"), reg("g", "now a file"), dir("f")), ApplyOptions{NoLchown: true})
	if !exists(filepath.Join(d, "a/keep")) || !exists(filepath.Join(d, "a/new")) {
		t.Error("directory over directory must merge")
	}
	if got := readFile(t, filepath.Join(d, "g")); got != "now a file" {
		t.Errorf("g = %q", got)
	}
	if st := lstat(t, filepath.Join(d, "f")); st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Error("f should be a directory now")
	}
}

func TestApplyWhiteoutsFlatten(t *testing.T) {
	d := tempDir(t)
	applyBytes(t, d, mkTar(t, dir("a"), reg("a/x", "x"), reg("a/y", "y"), dir("b"), reg("b/z", "z"),
		dir("c"), reg("c/old", "old"), dir("c/sub"), reg("c/sub/old", "old"), dir("e"), reg("e/old", "old")), ApplyOptions{NoLchown: true})
	applyBytes(t, d, mkTar(t,
		reg("a/.wh.x", ""), reg(".wh.b", ""), reg("nothere/.wh.q", ""),
		dir("c"), reg("c/.wh..wh..opq", ""), reg("c/new", "new"),
		// Non-conforming order (opaque after a sibling) keeps the layer's own entries.
		dir("e"), reg("e/new", "new"), dir("e/sub"), reg("e/.wh..wh..opq", ""),
		// A whiteout never removes what the same layer added.
		reg("a/mine", "m"), reg("a/.wh.mine", ""),
	), ApplyOptions{NoLchown: true})
	for p, want := range map[string]bool{
		"a/x": false, "a/y": true, "b": false, "nothere": false, "c/old": false, "c/sub": false, "c/new": true,
		"e/old": false, "e/new": true, "e/sub": true, "a/mine": true, "a/.wh.x": false, "c/.wh..wh..opq": false,
	} {
		if exists(filepath.Join(d, p)) != want {
			t.Errorf("%s exists=%v, want %v", p, !want, want)
		}
	}
}

func TestApplyWhiteoutsOverlay(t *testing.T) {
	testutil.RequireRoot(t) // trusted.overlay.opaque needs CAP_SYS_ADMIN
	d := tempDir(t)
	wh := reg("a/.wh.x", "")
	wh.hdr.Uid, wh.hdr.Gid = 7, 8
	applyBytes(t, d, mkTar(t, dir("a"), wh, dir("c"), reg("c/.wh..wh..opq", ""), reg("c/new", "n"), reg("gone/.wh..wh..opq", "")), ApplyOptions{Overlay: true})
	st := lstat(t, filepath.Join(d, "a/x"))
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 || st.Uid != 7 || st.Gid != 8 {
		t.Errorf("a/x: mode %o rdev %d uid %d gid %d, want 0/0 char device owned by 7:8", st.Mode, st.Rdev, st.Uid, st.Gid)
	}
	for _, p := range []string{"c", "gone"} {
		buf := make([]byte, 8)
		n, err := unix.Lgetxattr(filepath.Join(d, p), overlayOpaqueXattr, buf)
		if err != nil || string(buf[:n]) != "y" {
			t.Errorf("%s: opaque xattr %q, %v", p, buf[:n], err)
		}
	}
	if exists(filepath.Join(d, "c/.wh..wh..opq")) || exists(filepath.Join(d, "a/.wh.x")) {
		t.Error("whiteout marker files must not be extracted")
	}
}

func TestApplyRootMetadata(t *testing.T) {
	testutil.RequireRoot(t)
	f := reg("f", "x")
	f.hdr.Uid, f.hdr.Gid, f.hdr.Mode = 1234, 5678, 0o6750
	f.hdr.PAXRecords = map[string]string{
		"SCHILY.xattr.trusted.berth": "t", "SCHILY.xattr.user.berth": "u",
		"SCHILY.xattr.trusted.overlay.redirect": "/etc", "SCHILY.xattr.trusted.overlay.opaque": "y",
	}
	l := symlink("l", "f")
	l.hdr.Uid, l.hdr.Gid = 42, 43
	dv := ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: testTime}}
	bl := ent{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "blk", Mode: 0o600, Devmajor: 7, Devminor: 0, ModTime: testTime}}
	d := tempDir(t)
	applyBytes(t, d, mkTar(t, f, l, dv, bl), ApplyOptions{})
	st := lstat(t, filepath.Join(d, "f"))
	if st.Uid != 1234 || st.Gid != 5678 || st.Mode&0o7777 != 0o6750 {
		t.Errorf("f: uid %d gid %d mode %o (setuid/setgid must survive chown)", st.Uid, st.Gid, st.Mode&0o7777)
	}
	for name, want := range map[string]string{"trusted.berth": "t", "user.berth": "u"} {
		buf := make([]byte, 16)
		n, err := unix.Lgetxattr(filepath.Join(d, "f"), name, buf)
		if err != nil || string(buf[:n]) != want {
			t.Errorf("xattr %s = %q, %v", name, buf[:n], err)
		}
	}
	for _, name := range []string{"trusted.overlay.redirect", "trusted.overlay.opaque"} {
		if _, err := unix.Lgetxattr(filepath.Join(d, "f"), name, nil); err == nil {
			t.Errorf("overlay xattr %s from the layer must be dropped", name)
		}
	}
	if st := lstat(t, filepath.Join(d, "l")); st.Uid != 42 || st.Gid != 43 {
		t.Errorf("symlink owner %d:%d, want lchown 42:43", st.Uid, st.Gid)
	}
	if st := lstat(t, filepath.Join(d, "null")); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) || st.Mode&0o777 != 0o666 {
		t.Errorf("null: mode %o rdev %d", st.Mode, st.Rdev)
	}
	if st := lstat(t, filepath.Join(d, "blk")); st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != unix.Mkdev(7, 0) {
		t.Errorf("blk: mode %o rdev %d", st.Mode, st.Rdev)
	}
}

// TestRoundTrip: Apply, WriteDir, Apply again gives the same tree; WriteDir is deterministic.
func TestRoundTrip(t *testing.T) {
	exe := reg("bin/tool", "#!/bin/sh\necho hi\n")
	exe.hdr.Mode = 0o4755
	exe.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.k": "v"}
	sub := dir("d/sub")
	sub.hdr.Mode = 0o700
	layer := mkTar(t, dir("bin"), exe, dir("d"), sub, reg("d/sub/f", "f"), reg("empty", ""),
		symlink("d/l", "../bin/tool"), hardlink("d/h", "bin/tool"), reg("big", string(bytes.Repeat([]byte{1, 2, 3}, 100000))),
		ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "p", Mode: 0o600, ModTime: testTime}})
	a, b := tempDir(t), tempDir(t)
	opts := ApplyOptions{NoLchown: os.Geteuid() != 0}
	applyBytes(t, a, layer, opts)
	var w1, w2 bytes.Buffer
	if err := WriteDir(context.Background(), &w1, a); err != nil {
		t.Fatal(err)
	}
	if err := WriteDir(context.Background(), &w2, a); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w1.Bytes(), w2.Bytes()) {
		t.Error("WriteDir is not deterministic")
	}
	applyBytes(t, b, w1.Bytes(), opts)
	ta, tb := relTree(t, a), relTree(t, b)
	if len(ta) != len(tb) {
		t.Errorf("trees differ in size: %d vs %d", len(ta), len(tb))
	}
	for k, v := range ta {
		if tb[k] != v {
			t.Errorf("%s: %s != %s", k, v, tb[k])
		}
	}
	if ta["."] == "" || len(ta) < 10 {
		t.Errorf("tree walk looks wrong: %v", ta)
	}
}

// relTree is snapshotTree keyed by relative path, without the root's own line and inode-dependent fields.
func relTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for p, v := range snapshotTree(t, root, "") {
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			out["."] = "root"
			continue
		}
		out[rel] = v
	}
	return out
}

func TestWriteDiff(t *testing.T) {
	testutil.RequireRoot(t)
	upper := tempDir(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(upper, "opq/inner"), 0o755))
	must(os.WriteFile(filepath.Join(upper, "opq/inner/f"), []byte("f"), 0o644))
	must(unix.Setxattr(filepath.Join(upper, "opq"), overlayOpaqueXattr, []byte("y"), 0))
	must(unix.Setxattr(filepath.Join(upper, "opq"), "trusted.overlay.origin", []byte("x"), 0))
	must(unix.Mknod(filepath.Join(upper, "gone"), unix.S_IFCHR, 0))
	must(os.Link(filepath.Join(upper, "gone"), filepath.Join(upper, "gone2"))) // shared whiteout inode
	must(os.WriteFile(filepath.Join(upper, "new"), []byte("n"), 0o600))
	now := time.Unix(1700000000, 123)
	must(os.Chtimes(filepath.Join(upper, "new"), now, now))

	var buf bytes.Buffer
	must(WriteDiff(context.Background(), &buf, upper))
	var names []string
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
		if _, ok := h.PAXRecords["SCHILY.xattr.trusted.overlay.origin"]; ok {
			t.Errorf("%s: overlay xattrs must not leak into the diff", h.Name)
		}
		if h.Name == "new" && !h.ModTime.Equal(time.Unix(1700000000, 0)) {
			t.Errorf("mtime %v not truncated to seconds", h.ModTime)
		}
	}
	want := []string{".wh.gone", ".wh.gone2", "new", "opq/", "opq/.wh..wh..opq", "opq/inner/", "opq/inner/f"}
	if len(names) != len(want) {
		t.Fatalf("entries %q, want %q", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("entries %q, want %q", names, want)
		}
	}
	sum1 := sha256.Sum256(buf.Bytes())
	var again bytes.Buffer
	must(WriteDiff(context.Background(), &again, upper))
	if sha256.Sum256(again.Bytes()) != sum1 {
		t.Error("WriteDiff is not deterministic")
	}

	// Applying the diff in overlay mode reproduces the upper dir's whiteouts and opaque marker.
	back := tempDir(t)
	applyBytes(t, back, buf.Bytes(), ApplyOptions{Overlay: true})
	if st := lstat(t, filepath.Join(back, "gone")); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Error("whiteout did not round-trip")
	}
	b := make([]byte, 4)
	if n, err := unix.Lgetxattr(filepath.Join(back, "opq"), overlayOpaqueXattr, b); err != nil || string(b[:n]) != "y" {
		t.Error("opaque dir did not round-trip")
	}

	// Flattened onto a lower tree, the same diff deletes.
	lower := tempDir(t)
	applyBytes(t, lower, mkTar(t, reg("gone", "old"), dir("opq"), reg("opq/old", "old"), reg("keep", "k")), ApplyOptions{})
	applyBytes(t, lower, buf.Bytes(), ApplyOptions{})
	for p, want := range map[string]bool{"gone": false, "opq/old": false, "opq/inner/f": true, "keep": true, "new": true} {
		if exists(filepath.Join(lower, p)) != want {
			t.Errorf("flattened %s exists=%v, want %v", p, !want, want)
		}
	}
}

func TestWriteCanceled(t *testing.T) {
	d := tempDir(t)
	if err := os.WriteFile(filepath.Join(d, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WriteDir(ctx, &bytes.Buffer{}, d); err == nil {
		t.Fatal("want error from canceled context")
	}
}
