package overlay

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/snapshot"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

func openDB(t *testing.T, root string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(root, "meta.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func newTestSnapshotter(t *testing.T) (*Snapshotter, string) {
	t.Helper()
	root := t.TempDir()
	db := openDB(t, root)
	t.Cleanup(func() { db.Close() })
	s, err := New(root, db)
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

func snapshotDirs(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "spare-") { // recycled, see TestRecycle
			names = append(names, e.Name())
		}
	}
	return names
}

func wantErr(t *testing.T, err error, is func(error) bool, what string) {
	t.Helper()
	if err == nil || !is(err) {
		t.Errorf("%s: want %s error, got %v", what, what, err)
	}
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	s, root := newTestSnapshotter(t)

	m, err := s.Prepare(ctx, "a", "", map[string]string{"l": "1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || m[0].Type != "bind" || !slices.Contains(m[0].Options, "rw") {
		t.Fatalf("Prepare without parent: %+v, want rw bind", m)
	}
	upper, err := s.UpperDir(ctx, "a")
	if err != nil || upper != m[0].Source {
		t.Fatalf("UpperDir = %q, %v; want %q", upper, err, m[0].Source)
	}
	if err := os.WriteFile(filepath.Join(upper, "f"), make([]byte, 10000), 0o644); err != nil {
		t.Fatal(err)
	}
	u, err := s.Usage(ctx, "a")
	if err != nil || u.Inodes != 2 || u.Size < 10000 {
		t.Errorf("Usage(active) = %+v, %v; want 2 inodes, >= 10000 bytes", u, err)
	}
	info, err := s.Stat(ctx, "a")
	if err != nil || info.Kind != snapshot.Active || info.Name != "a" || info.Labels["l"] != "1" || info.Created.IsZero() {
		t.Errorf("Stat(a) = %+v, %v", info, err)
	}
	if err := s.Commit(ctx, "A", "a", map[string]string{"c": "2"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Stat(ctx, "a")
	wantErr(t, err, errdefs.IsNotFound, "Stat of committed key")
	info, err = s.Stat(ctx, "A")
	if err != nil || info.Kind != snapshot.Committed || info.Labels["c"] != "2" || info.Labels["l"] != "" {
		t.Errorf("Stat(A) = %+v, %v; labels must be replaced", info, err)
	}
	if cu, err := s.Usage(ctx, "A"); err != nil || cu != u {
		t.Errorf("Usage(committed) = %+v, %v; want %+v", cu, err, u)
	}

	m, err = s.Prepare(ctx, "b", "A", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || m[0].Type != "overlay" {
		t.Fatalf("Prepare with parent: %+v", m)
	}
	opts := strings.Join(m[0].Options, ",")
	for _, want := range []string{"upperdir=", "workdir=", "lowerdir=" + upper} {
		if !strings.Contains(opts, want) {
			t.Errorf("options %q lack %q", opts, want)
		}
	}
	again, err := s.Mounts(ctx, "b")
	if err != nil || !slices.EqualFunc(again, m, func(x, y snapshot.Mount) bool {
		return x.Type == y.Type && x.Source == y.Source && slices.Equal(x.Options, y.Options)
	}) {
		t.Errorf("Mounts(b) = %+v, %v; want %+v", again, err, m)
	}
	if err := s.Commit(ctx, "B", "b", nil); err != nil {
		t.Fatal(err)
	}

	v1, err := s.View(ctx, "v1", "A", nil)
	if err != nil || len(v1) != 1 || v1[0].Type != "bind" || v1[0].Source != upper || !slices.Contains(v1[0].Options, "ro") {
		t.Errorf("View over one layer: %+v, %v; want ro bind of the parent", v1, err)
	}
	v2, err := s.View(ctx, "v2", "B", nil)
	if err != nil || len(v2) != 1 || v2[0].Type != "overlay" || !slices.Contains(v2[0].Options, "ro") ||
		strings.Contains(strings.Join(v2[0].Options, ","), "upperdir") {
		t.Errorf("View over two layers: %+v, %v; want ro overlay of lowers only", v2, err)
	}
	v3, err := s.View(ctx, "v3", "", nil)
	if err != nil || v3[0].Type != "bind" || !slices.Contains(v3[0].Options, "ro") {
		t.Errorf("View without parent: %+v, %v", v3, err)
	}

	var walked []string
	err = s.Walk(ctx, func(_ context.Context, i snapshot.Info) error {
		walked = append(walked, i.Name+"/"+i.Kind.String()+"/"+i.Parent)
		return nil
	})
	want := []string{"A/committed/", "B/committed/A", "v1/view/A", "v2/view/B", "v3/view/"}
	if err != nil || !slices.Equal(walked, want) {
		t.Errorf("Walk = %q, %v; want %q", walked, err, want)
	}

	wantErr(t, s.Remove(ctx, "A"), errdefs.IsFailedPrecondition, "Remove with children")
	for _, k := range []string{"v1", "v2", "v3", "B", "A"} {
		if err := s.Remove(ctx, k); err != nil {
			t.Fatalf("Remove(%s): %v", k, err)
		}
	}
	if d := snapshotDirs(t, root); len(d) != 0 {
		t.Errorf("directories left after removing everything: %v", d)
	}
}

func TestMisuse(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestSnapshotter(t)
	if _, err := s.Prepare(ctx, "act", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.View(ctx, "view", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(ctx, "c", "", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "com", "c", nil); err != nil {
		t.Fatal(err)
	}
	_, err := s.Prepare(ctx, "act", "", nil)
	wantErr(t, err, errdefs.IsAlreadyExists, "Prepare existing key")
	_, err = s.View(ctx, "com", "", nil)
	wantErr(t, err, errdefs.IsAlreadyExists, "View over a committed name")
	_, err = s.Prepare(ctx, "x", "missing", nil)
	wantErr(t, err, errdefs.IsNotFound, "Prepare missing parent")
	_, err = s.Prepare(ctx, "x", "act", nil)
	wantErr(t, err, errdefs.IsInvalidArgument, "Prepare over active parent")
	_, err = s.Prepare(ctx, "", "", nil)
	wantErr(t, err, errdefs.IsInvalidArgument, "empty key")
	wantErr(t, s.Commit(ctx, "y", "view", nil), errdefs.IsFailedPrecondition, "Commit view")
	wantErr(t, s.Commit(ctx, "y", "com", nil), errdefs.IsFailedPrecondition, "Commit committed")
	wantErr(t, s.Commit(ctx, "com", "act", nil), errdefs.IsAlreadyExists, "Commit onto existing name")
	wantErr(t, s.Commit(ctx, "y", "nope", nil), errdefs.IsNotFound, "Commit unknown")
	_, err = s.Mounts(ctx, "com")
	wantErr(t, err, errdefs.IsFailedPrecondition, "Mounts committed")
	_, err = s.UpperDir(ctx, "view")
	wantErr(t, err, errdefs.IsFailedPrecondition, "UpperDir view")
	wantErr(t, s.Remove(ctx, "nope"), errdefs.IsNotFound, "Remove unknown")
	_, err = s.Stat(ctx, "nope")
	wantErr(t, err, errdefs.IsNotFound, "Stat unknown")
	_, err = s.Usage(ctx, "nope")
	wantErr(t, err, errdefs.IsNotFound, "Usage unknown")
	// The failed Commit of "act" onto "com" left "act" active.
	if info, err := s.Stat(ctx, "act"); err != nil || info.Kind != snapshot.Active {
		t.Errorf("act after failed commit: %+v, %v", info, err)
	}
}

// TestFailedPrepareLeavesNothing breaks a parent's directory so Prepare fails after it created
// its own directory: neither the record nor the directory may remain.
func TestFailedPrepareLeavesNothing(t *testing.T) {
	ctx := context.Background()
	s, root := newTestSnapshotter(t)
	if _, err := s.Prepare(ctx, "p", "", nil); err != nil {
		t.Fatal(err)
	}
	up, _ := s.UpperDir(ctx, "p")
	if err := s.Commit(ctx, "P", "p", nil); err != nil {
		t.Fatal(err)
	}
	before := snapshotDirs(t, root)
	if err := os.RemoveAll(up); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(ctx, "child", "P", nil); err == nil {
		t.Fatal("Prepare over a parent without fs dir succeeded")
	}
	if _, err := s.Stat(ctx, "child"); !errdefs.IsNotFound(err) {
		t.Errorf("record of failed Prepare remains: %v", err)
	}
	if after := snapshotDirs(t, root); !slices.Equal(before, after) {
		t.Errorf("directories %v -> %v after failed Prepare", before, after)
	}
	// The parent has no child recorded, so it can be removed.
	if err := s.Remove(ctx, "P"); err != nil {
		t.Errorf("Remove after failed child Prepare: %v", err)
	}
}

func TestCleanupAfterCrash(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	db := openDB(t, root)
	s, err := New(root, db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(ctx, "keep", "", map[string]string{"x": "y"}); err != nil {
		t.Fatal(err)
	}
	// What a daemon killed mid-Prepare or mid-Remove leaves behind.
	for _, d := range []string{"99/fs", "99/work", "new-123/fs", "rm-7/fs/deep"} {
		if err := os.MkdirAll(filepath.Join(root, "snapshots", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, root)
	defer db.Close()
	s, err = New(root, db)
	if err != nil {
		t.Fatal(err)
	}
	if d := snapshotDirs(t, root); len(d) != 1 {
		t.Errorf("after New: %v, want only the kept snapshot's directory", d)
	}
	if info, err := s.Stat(ctx, "keep"); err != nil || info.Labels["x"] != "y" {
		t.Errorf("metadata lost across reopen: %+v, %v", info, err)
	}
	if err := s.Cleanup(ctx); err != nil {
		t.Errorf("Cleanup: %v", err)
	}
}

func TestWalkCallbackMayCallBack(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestSnapshotter(t)
	for _, k := range []string{"a", "b"} {
		if _, err := s.Prepare(ctx, k, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	stop := errors.New("stop")
	n := 0
	err := s.Walk(ctx, func(ctx context.Context, i snapshot.Info) error {
		n++
		if err := s.Remove(ctx, i.Name); err != nil { // a write from inside Walk must not deadlock
			return err
		}
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("Walk: %v after %d calls; want the callback's error after 1", err, n)
	}
}

// recycle removes key and recycles its directory, as the daemon does for a removed container.
func recycle(t *testing.T, s *Snapshotter, key string) {
	t.Helper()
	if err := s.remove(key, (*Removal).Recycle); err != nil {
		t.Fatal(err)
	}
}

// TestRecycle: a removed snapshot's directory comes back empty for the next Prepare, with the
// owner and mode of its new parent and none of the old contents, attributes or overlayfs marks.
func TestRecycle(t *testing.T) {
	ctx := context.Background()
	s, root := newTestSnapshotter(t)
	if _, err := s.Prepare(ctx, "base-active", "", nil); err != nil {
		t.Fatal(err)
	}
	baseFS, _ := s.UpperDir(ctx, "base-active")
	if err := os.Chmod(baseFS, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "base", "base-active", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(ctx, "c1", "base", nil); err != nil {
		t.Fatal(err)
	}
	up, _ := s.UpperDir(ctx, "c1")
	dir := filepath.Dir(up)
	for _, p := range []string{"fs/a/b", "work/work/incompat/volatile", "work/index/x"} {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(up, "file"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(up, "user.berth-test", []byte("old"), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
		t.Fatal(err)
	}
	if err := os.Chown(up, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "volatile-boot-id"), []byte("boot"), 0o600); err != nil {
		t.Fatal(err)
	}
	recycle(t, s, "c1")
	if d := snapshotDirs(t, root); len(d) != 1 || s.spares.Len() != 1 {
		t.Fatalf("directories after the removal: %v, spares %v", d, s.spares.Names())
	}
	// The next snapshot, with no parent, reuses the directory.
	if _, err := s.Prepare(ctx, "c2", "", nil); err != nil {
		t.Fatal(err)
	}
	up2, _ := s.UpperDir(ctx, "c2")
	for name, want := range map[string][]string{"fs": nil, "work": {"work"}, "work/work": nil} {
		got, err := readNames(filepath.Join(filepath.Dir(up2), name))
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s holds %q (%v), want %q", name, got, err, want)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(up2, &st); err != nil || st.Mode&0o7777 != 0o755 || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("reused fs: mode %o owner %d:%d, want 755 0:0", st.Mode&0o7777, st.Uid, st.Gid)
	}
	if n, _ := unix.Llistxattr(up2, make([]byte, 256)); n > 0 {
		t.Errorf("reused fs keeps %d bytes of xattr names", n)
	}
	if s.spares.Len() != 0 {
		t.Errorf("spares after reuse: %v", s.spares.Names())
	}
	// A removed child of base comes back with base's mode.
	recycle(t, s, "c2")
	if _, err := s.Prepare(ctx, "c3", "base", nil); err != nil {
		t.Fatal(err)
	}
	up3, _ := s.UpperDir(ctx, "c3")
	if err := unix.Stat(up3, &st); err != nil || st.Mode&0o7777 != 0o750 {
		t.Errorf("reused fs mode %o, want the parent's 750", st.Mode&0o7777)
	}
	// An upper directory with an inode flag someone set (here: synchronous updates) is not
	// reused: the flag would carry over to the next container's files.
	if f, err := os.Open(up3); err == nil {
		flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
		if err == nil {
			err = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags|0x8)) // FS_SYNC_FL
		}
		f.Close()
		if err == nil {
			recycle(t, s, "c3")
			if s.spares.Len() != 0 {
				t.Errorf("a directory with inode flags was recycled")
			}
			if _, err := s.Prepare(ctx, "c3", "base", nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A plain Remove deletes; a Cleanup keeps this process's spares; the next process deletes
	// them.
	recycle(t, s, "c3")
	if err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if s.spares.Len() != 1 {
		t.Fatalf("spares: %v", s.spares.Names())
	}
	if _, err := os.Stat(filepath.Join(root, "snapshots", s.spares.Names()[0])); err != nil {
		t.Errorf("Cleanup deleted a spare in use: %v", err)
	}
	s2, err := New(root, s.db)
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "snapshots")); len(entries) != 1 {
		t.Errorf("after a new snapshotter's Cleanup: %d entries, want base's alone", len(entries))
	}
	if _, err := s2.Prepare(ctx, "c4", "", nil); err != nil {
		t.Fatal(err)
	}
	if err := s2.Remove(ctx, "c4"); err != nil || s2.spares.Len() != 0 {
		t.Errorf("Remove recycled (%v): spares %v", err, s2.spares.Names())
	}
}

func readNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, err
}
