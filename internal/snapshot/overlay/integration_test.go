package overlay

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/berth-dev/berth/internal/snapshot"
	"github.com/berth-dev/berth/internal/testutil"
	"golang.org/x/sys/unix"
)

type tentry struct {
	name, body string
	dir        bool
}

func layerTar(t *testing.T, ents ...tentry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e.body)), ModTime: time.Unix(1e9, 0)}
		if e.dir {
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
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

// unpack applies a layer the way the image package does: Prepare, Apply into UpperDir, Commit.
func unpack(t *testing.T, s *Snapshotter, name, parent string, layer []byte) {
	t.Helper()
	ctx := context.Background()
	key := "extract-" + name
	if _, err := s.Prepare(ctx, key, parent, nil); err != nil {
		t.Fatal(err)
	}
	dir, err := s.UpperDir(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Apply(ctx, dir, bytes.NewReader(layer), archive.ApplyOptions{Overlay: true}); err != nil {
		t.Fatalf("applying layer %s: %v", name, err)
	}
	if err := s.Commit(ctx, name, key, nil); err != nil {
		t.Fatal(err)
	}
}

// mount mounts a snapshot's mounts on a fresh directory, unmounted in t.Cleanup.
func mount(t *testing.T, mounts []snapshot.Mount) string {
	t.Helper()
	target := t.TempDir()
	t.Cleanup(func() {
		if err := snapshot.UnmountAll(target); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), " "+target+" ") {
			t.Errorf("cleanup: %s still mounted", target)
		}
	})
	if err := snapshot.MountAll(mounts, target); err != nil {
		t.Fatal(err)
	}
	return target
}

func TestOverlay150Layers(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	s, _ := newTestSnapshotter(t)
	const n = 150
	parent := ""
	for i := 1; i <= n; i++ {
		ents := []tentry{{name: fmt.Sprintf("files/f%03d", i), body: fmt.Sprint(i)}}
		switch i {
		case 10:
			ents = append(ents, tentry{name: "gone", body: "old"}, tentry{name: "opq/", dir: true}, tentry{name: "opq/old", body: "old"})
		case 11: // whiteout in layer N hides a file of layer N-1; opaque dir hides its old contents
			ents = append(ents, tentry{name: ".wh.gone"}, tentry{name: "opq/", dir: true}, tentry{name: "opq/.wh..wh..opq"}, tentry{name: "opq/new", body: "new"})
		}
		name := fmt.Sprintf("L%03d", i)
		unpack(t, s, name, parent, layerTar(t, ents...))
		parent = name
	}

	mounts, err := s.Prepare(ctx, "ctr", parent, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l := len(strings.Join(mounts[0].Options, ",")); l < os.Getpagesize() {
		t.Fatalf("options are only %d bytes: the test no longer exercises the >1 page path", l)
	}
	root := mount(t, mounts)
	for i := 1; i <= n; i++ {
		b, err := os.ReadFile(filepath.Join(root, fmt.Sprintf("files/f%03d", i)))
		if err != nil || string(b) != fmt.Sprint(i) {
			t.Fatalf("file of layer %d: %q, %v", i, b, err)
		}
	}
	for p, want := range map[string]bool{"gone": false, "opq/old": false, "opq/new": true} {
		if _, err := os.Lstat(filepath.Join(root, p)); (err == nil) != want {
			t.Errorf("%s visible=%v, want %v", p, err == nil, want)
		}
	}

	// Changes land in the upper dir; WriteDiff turns them into a layer with a whiteout.
	if err := os.WriteFile(filepath.Join(root, "added"), make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, "files/f005")); err != nil {
		t.Fatal(err)
	}
	u, err := s.Usage(ctx, "ctr")
	if err != nil || u.Size < 8192 || u.Inodes < 4 {
		t.Errorf("Usage(ctr) = %+v, %v; want the added file counted", u, err)
	}
	upper, _ := s.UpperDir(ctx, "ctr")
	var diff bytes.Buffer
	if err := archive.WriteDiff(ctx, &diff, upper); err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(&diff)
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		names = append(names, h.Name)
	}
	if got := strings.Join(names, " "); got != "added files/ files/.wh.f005" {
		t.Errorf("diff entries %q", got)
	}

	// A view is read-only.
	vroot := mount(t, mustView(t, s, "view", parent))
	if err := os.WriteFile(filepath.Join(vroot, "x"), nil, 0o644); err == nil {
		t.Error("write into a view succeeded")
	}
	if _, err := os.Stat(filepath.Join(vroot, "files/f150")); err != nil {
		t.Error(err)
	}
}

func mustView(t *testing.T, s *Snapshotter, key, parent string) []snapshot.Mount {
	t.Helper()
	m, err := s.View(context.Background(), key, parent, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestOverlayFewLayersAndRemove(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	s, root := newTestSnapshotter(t)
	unpack(t, s, "base", "", layerTar(t, tentry{name: "etc/", dir: true}, tentry{name: "etc/a", body: "a"}))
	unpack(t, s, "top", "base", layerTar(t, tentry{name: "etc/b", body: "b"}))

	mounts, err := s.Prepare(ctx, "ctr", "top", nil)
	if err != nil {
		t.Fatal(err)
	}
	if l := len(strings.Join(mounts[0].Options, ",")); l >= os.Getpagesize() {
		t.Fatalf("short stack has %d bytes of options; want the mount(2) path", l)
	}
	target := mount(t, mounts)
	for _, f := range []string{"etc/a", "etc/b"} {
		if _, err := os.Stat(filepath.Join(target, f)); err != nil {
			t.Error(err)
		}
	}
	// A view over a single layer is a read-only bind mount.
	vt := mount(t, mustView(t, s, "v", "base"))
	if _, err := os.Stat(filepath.Join(vt, "etc/a")); err != nil {
		t.Error(err)
	}
	if err := unix.Access(filepath.Join(vt, "etc"), unix.W_OK); err == nil {
		t.Error("view of one layer is writable")
	}

	if err := s.Remove(ctx, "top"); err == nil {
		t.Error("Remove of a parent with an active child succeeded")
	}
	if err := snapshot.UnmountAll(target); err != nil {
		t.Fatal(err)
	}
	if err := snapshot.UnmountAll(vt); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ctr", "v", "top", "base"} {
		if err := s.Remove(ctx, k); err != nil {
			t.Fatalf("Remove(%s): %v", k, err)
		}
	}
	if d := snapshotDirs(t, root); len(d) != 0 {
		t.Errorf("left over: %v", d)
	}
}
