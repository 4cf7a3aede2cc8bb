package volume

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

func newTestStore(t *testing.T) (*Store, string) {
	t.Helper()
	root := t.TempDir()
	db, err := bolt.Open(filepath.Join(root, "meta.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	s, err := New(root, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

func TestStoreLifecycle(t *testing.T) {
	ctx := context.Background()
	s, root := newTestStore(t)
	v, created, err := s.Create(ctx, CreateOptions{Name: "data", Labels: map[string]string{"a": "b"}}, false)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	if v.Driver != DriverLocal || v.Labels["a"] != "b" || v.Anonymous {
		t.Errorf("volume: %+v", v)
	}
	if st, err := os.Stat(s.Path("data")); err != nil || !st.IsDir() {
		t.Fatalf("data dir: %v", err)
	}
	if s.Path("data") != filepath.Join(root, "volumes", "data", "_data") {
		t.Errorf("path %s", s.Path("data"))
	}
	// Creating it again returns the existing one.
	v2, created, err := s.Create(ctx, CreateOptions{Name: "data"}, false)
	if err != nil || created || v2.Labels["a"] != "b" {
		t.Errorf("re-create: %+v %v %v", v2, created, err)
	}
	anon, _, err := s.Create(ctx, CreateOptions{Anonymous: true}, false)
	if err != nil || len(anon.Name) != 64 || !anon.Anonymous {
		t.Fatalf("anonymous: %+v %v", anon, err)
	}
	list, err := s.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %+v %v", list, err)
	}
	// In use: refused with a conflict naming the container.
	s.SetInUse(func(name string) []string {
		if name == "data" {
			return []string{"c1"}
		}
		return nil
	})
	err = s.Remove(ctx, "data", false)
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "volume is in use - [c1]") {
		t.Errorf("remove in use: %v", err)
	}
	// Pinned: refused too.
	s.Pin(anon.Name)
	if err := s.Remove(ctx, anon.Name, false); !errdefs.IsConflict(err) {
		t.Errorf("remove pinned: %v", err)
	}
	s.Unpin(anon.Name)
	if err := os.WriteFile(filepath.Join(s.Path(anon.Name), "f"), make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	// Prune removes only the unused anonymous volume and counts its size.
	names, freed, err := s.Prune(ctx, func(v Volume) bool { return true })
	if err != nil || len(names) != 1 || names[0] != anon.Name || freed != 1000 {
		t.Errorf("prune: %v %d %v", names, freed, err)
	}
	if _, err := s.Get(anon.Name); !errdefs.IsNotFound(err) {
		t.Errorf("pruned volume still there: %v", err)
	}
	s.SetInUse(nil)
	if err := s.Remove(ctx, "data", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "volumes", "data")); !os.IsNotExist(err) {
		t.Errorf("directory left: %v", err)
	}
	if err := s.Remove(ctx, "data", false); !errdefs.IsNotFound(err) {
		t.Errorf("remove missing: %v", err)
	}
	if err := s.Remove(ctx, "data", true); err != nil {
		t.Errorf("force remove missing: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "volumes"))
	if len(ents) != 0 {
		t.Errorf("left in volumes/: %v", ents)
	}
}

func TestStoreRejects(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	if _, _, err := s.Create(ctx, CreateOptions{Name: "bad/name"}, false); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad name: %v", err)
	}
	if _, _, err := s.Create(ctx, CreateOptions{Name: "x1", Driver: "nfs"}, false); !errdefs.IsNotFound(err) {
		t.Errorf("driver: %v", err)
	}
	if _, _, err := s.Create(ctx, CreateOptions{Name: "x1", Options: map[string]string{"type": "tmpfs"}}, false); !errdefs.IsNotImplemented(err) {
		t.Errorf("options: %v", err)
	}
	if l, _ := s.List(); len(l) != 0 {
		t.Errorf("failed creates left %v", l)
	}
}

func TestStoreRecovery(t *testing.T) {
	root := t.TempDir()
	db, err := bolt.Open(filepath.Join(root, "meta.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := os.MkdirAll(filepath.Join(root, "volumes", tmpPrefix+"123", "_data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := New(root, db, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "volumes", tmpPrefix+"123")); !os.IsNotExist(err) {
		t.Errorf("leftover not removed: %v", err)
	}
}

func TestDirSize(t *testing.T) {
	d := t.TempDir()
	_ = os.WriteFile(filepath.Join(d, "a"), make([]byte, 100), 0o644)
	_ = os.Mkdir(filepath.Join(d, "sub"), 0o755)
	_ = os.WriteFile(filepath.Join(d, "sub", "b"), make([]byte, 50), 0o644)
	_ = os.Link(filepath.Join(d, "a"), filepath.Join(d, "sub", "hard"))
	if n, err := DirSize(d); err != nil || n != 150 {
		t.Errorf("size %d %v", n, err)
	}
}
