package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/snapshot"
	"github.com/berth-dev/berth/internal/snapshot/overlay"
	"github.com/berth-dev/berth/internal/testutil"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"go.etcd.io/bbolt"
)

func layerOf(t *testing.T, entries ...*tar.Header) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		data := ""
		if h.Typeflag == tar.TypeReg {
			data = h.Name
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(data))
	}
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestOverlayIntegration runs the service over the real overlay snapshotter and layer applier:
// import, load with whiteouts, mount the result, delete, and check nothing is left.
func TestOverlayIntegration(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	root := t.TempDir()
	db, err := bbolt.Open(filepath.Join(root, "meta.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	sn, err := overlay.New(root, db)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := image.New(ctx, image.Options{Root: root, DB: db, Snapshotter: sn})
	if err != nil {
		t.Fatal(err)
	}

	id, err := svc.ImageImport(ctx, bytes.NewReader(testutil.BusyboxTar(t)), "busybox", nil, "", nil)
	if err != nil {
		t.Fatal(err)
	}

	dir := func(n string) *tar.Header { return &tar.Header{Name: n, Typeflag: tar.TypeDir, Mode: 0o755} }
	file := func(n string) *tar.Header { return &tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644} }
	link := func(n, to string) *tar.Header {
		return &tar.Header{Name: n, Typeflag: tar.TypeSymlink, Linkname: to, Mode: 0o777}
	}
	// Layer 2 writes through layer 1's symlink (bin -> usr/bin), as Debian-style images do:
	// the file must land in usr/bin and bin must stay a link.
	l1 := layerOf(t, dir("a/"), file("a/keep"), file("a/gone"), dir("d/"), file("d/old"), dir("usr/"), dir("usr/bin/"), link("bin", "usr/bin"))
	l2 := layerOf(t, file("a/.wh.gone"), dir("d/"), file("d/.wh..wh..opq"), file("d/new"), file("bin/tool"))
	img, err := mutate.AppendLayers(empty.Image, l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ImageLoad(ctx, bytes.NewReader(dockerArchive(t, map[string]v1.Image{"wh:1": img})), nil); err != nil {
		t.Fatal(err)
	}
	ins, err := svc.ImageInspect(ctx, "wh:1")
	if err != nil {
		t.Fatal(err)
	}
	top := chainOf(ins.RootFS.Layers)
	mounts, err := sn.View(ctx, "view-wh", top, nil)
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if err := snapshot.MountAll(mounts, target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snapshot.UnmountAll(target) })
	var got []string
	filepath.WalkDir(target, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(target, p)
			got = append(got, rel)
		}
		return nil
	})
	slices.Sort(got)
	if !slices.Equal(got, []string{"a/keep", "bin", "d/new", "usr/bin/tool"}) {
		t.Fatalf("merged view = %v", got)
	}
	if fi, err := os.Lstat(filepath.Join(target, "bin")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("bin is no longer a symlink: %v %v", fi, err)
	}
	if err := snapshot.UnmountAll(target); err != nil {
		t.Fatal(err)
	}
	if err := sn.Remove(ctx, "view-wh"); err != nil {
		t.Fatal(err)
	}

	// Restart, then delete everything: no snapshot and no blob remains.
	if svc, err = image.New(ctx, image.Options{Root: root, DB: db, Snapshotter: sn}); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"wh:1", id} {
		if _, err := svc.ImageDelete(ctx, ref, false, false); err != nil {
			t.Fatal(err)
		}
	}
	var left []string
	sn.Walk(ctx, func(_ context.Context, i snapshot.Info) error { left = append(left, i.Name); return nil })
	if len(left) != 0 {
		t.Fatalf("snapshots left: %v", left)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "content", "blobs", "sha256"))
	if len(ents) != 0 {
		t.Fatalf("%d blobs left", len(ents))
	}
}
