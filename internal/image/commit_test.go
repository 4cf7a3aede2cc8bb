package image_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/snapshot"
	"github.com/berth-dev/berth/internal/snapshot/overlay"
	"github.com/berth-dev/berth/internal/testutil"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
)

func TestCommitIntegration(t *testing.T) {
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
	base, err := svc.ImageImport(ctx, bytes.NewReader(testutil.BusyboxTar(t)), "busybox", nil, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	// A diff as archive.WriteDiff writes it: a new file and an OCI whiteout.
	diff := tarFiles(t, map[string]string{"newfile": "hello\n", "etc/.wh.group": ""})
	cfg := dockerspec.DockerOCIImageConfig{}
	cfg.Env = []string{"A=1"}
	id, err := svc.Commit(ctx, image.CommitOptions{
		Parent: base, Layer: bytes.NewReader(diff), Config: cfg,
		Changes: []string{`CMD ["cat", "/newfile"]`}, Author: "me", Comment: "msg", CreatedBy: "sh", Ref: "mine:v1",
	})
	if err != nil {
		t.Fatal(err)
	}
	ins, err := svc.ImageInspect(ctx, "mine:v1")
	if err != nil {
		t.Fatal(err)
	}
	if ins.ID != id || len(ins.RootFS.Layers) != 2 || ins.Author != "me" || ins.Comment != "msg" ||
		!slices.Equal(ins.Config.Cmd, []string{"cat", "/newfile"}) || !slices.Equal(ins.Config.Env, []string{"A=1"}) {
		t.Fatalf("inspect: %+v %+v", ins, ins.Config)
	}
	if ins.RootFS.Layers[1] != "sha256:"+sha256hex(diff) {
		t.Errorf("diffID %s, want the tar's digest", ins.RootFS.Layers[1])
	}
	hist, err := svc.ImageHistory(ctx, "mine:v1")
	if err != nil || len(hist) != 2 || hist[0].CreatedBy != "sh" || hist[0].Comment != "msg" {
		t.Errorf("history: %+v %v", hist, err)
	}
	// The new layer is a committed snapshot: a container's view has the file, not the deleted one.
	mounts, err := sn.View(ctx, "view-commit", chainOf(ins.RootFS.Layers), nil)
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if err := snapshot.MountAll(mounts, target); err != nil {
		t.Fatal(err)
	}
	b, rerr := os.ReadFile(filepath.Join(target, "newfile"))
	_, gerr := os.Stat(filepath.Join(target, "etc", "group"))
	_, perr := os.Stat(filepath.Join(target, "etc", "passwd"))
	if err := snapshot.UnmountAll(target); err != nil {
		t.Fatal(err)
	}
	if err := sn.Remove(ctx, "view-commit"); err != nil {
		t.Fatal(err)
	}
	if string(b) != "hello\n" || rerr != nil || !os.IsNotExist(gerr) || perr != nil {
		t.Errorf("view: newfile %q %v, group %v, passwd %v", b, rerr, gerr, perr)
	}
	// The same changes again share the layer; an unknown parent is not found.
	id2, err := svc.Commit(ctx, image.CommitOptions{Parent: base, Layer: bytes.NewReader(diff), Comment: "again"})
	if err != nil || id2 == id {
		t.Fatalf("second commit: %s %v", id2, err)
	}
	if _, err := svc.Commit(ctx, image.CommitOptions{Parent: "sha256:" + sha256hex([]byte("x")), Layer: bytes.NewReader(diff)}); err == nil {
		t.Error("commit on a missing parent")
	}
	if _, err := svc.Commit(ctx, image.CommitOptions{Parent: base, Layer: bytes.NewReader(diff), Changes: []string{"NOPE x"}}); err == nil {
		t.Error("bad change accepted")
	}
	// A stream that fails midway leaves no snapshot or blob behind (checked below).
	broken := io.MultiReader(bytes.NewReader(diff[:700]), iotest.ErrReader(errors.New("disk on fire")))
	if _, err := svc.Commit(ctx, image.CommitOptions{Parent: base, Layer: broken}); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("broken stream: %v", err)
	}
	// Deleting everything leaves nothing.
	for _, ref := range []string{"mine:v1", id2, base} {
		if _, err := svc.ImageDelete(ctx, ref, false, false); err != nil {
			t.Fatal(err)
		}
	}
	var left []string
	_ = sn.Walk(ctx, func(_ context.Context, i snapshot.Info) error { left = append(left, i.Name); return nil })
	if len(left) != 0 {
		t.Fatalf("snapshots left: %v", left)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "content", "blobs", "sha256"))
	if len(ents) != 0 {
		t.Fatalf("%d blobs left", len(ents))
	}
}
