package image_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/testutil"
	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	mobyimage "github.com/moby/moby/api/types/image"
)

func TestImportBusybox(t *testing.T) {
	tarData := testutil.BusyboxTar(t)
	e := newEnv(t)
	ctx := context.Background()
	// Gzip the input to exercise decompression; the stored layer is the plain tar.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarData)
	zw.Close()
	changes := []string{`CMD ["/bin/sh"]`, "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin", "ENV FOO bar baz", "EXPOSE 80 53/udp",
		`LABEL org.example.name="busy box" version=1`, "USER nobody", "VOLUME /data", "WORKDIR /tmp", "STOPSIGNAL SIGINT", "ONBUILD RUN echo hi"}
	id, err := e.svc.ImageImport(ctx, &gz, "busybox:imported", changes, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ins, err := e.svc.ImageInspect(ctx, "busybox:imported")
	if err != nil {
		t.Fatal(err)
	}
	if ins.ID != id || ins.Os != "linux" || ins.Comment != "Imported from -" || ins.Architecture == "" {
		t.Fatalf("inspect = %+v", ins)
	}
	wantDiff := "sha256:" + sha256hex(tarData)
	if !slices.Equal(ins.RootFS.Layers, []string{wantDiff}) {
		t.Fatalf("layers = %v, want %s", ins.RootFS.Layers, wantDiff)
	}
	c := ins.Config
	if !slices.Equal(c.Cmd, []string{"/bin/sh"}) || c.User != "nobody" || c.WorkingDir != "/tmp" || c.StopSignal != "SIGINT" ||
		!slices.Contains(c.Env, "FOO=bar baz") || c.Labels["org.example.name"] != "busy box" ||
		len(c.ExposedPorts) != 2 || len(c.Volumes) != 1 || !slices.Equal(c.OnBuild, []string{"RUN echo hi"}) {
		t.Fatalf("config = %+v", c)
	}
	if ins.Metadata.LastTagTime.IsZero() {
		t.Error("LastTagTime not set")
	}
	res, err := e.svc.Resolve(ctx, id[:10])
	if err != nil || res.ID != id || res.ChainID != wantDiff || res.Config.OS != "linux" || res.Config.Config.User != "nobody" {
		t.Fatalf("Resolve = %+v, %v", res, err)
	}
	// The unpacked layer has busybox in it.
	if _, err := os.Stat(filepath.Join(e.snap.dir(wantDiff), "bin", "busybox")); err != nil {
		t.Fatal(err)
	}
	hist, err := e.svc.ImageHistory(ctx, "busybox:imported")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 || hist[0].ID != id || hist[0].Comment != "Imported from -" || !slices.Equal(hist[0].Tags, []string{"busybox:imported"}) || hist[0].Size <= 0 {
		t.Fatalf("history = %+v", hist)
	}
	list, err := e.svc.ImageList(ctx, false, nil)
	if err != nil || len(list) != 1 || list[0].ID != id || list[0].Containers != -1 || !slices.Equal(list[0].RepoTags, []string{"busybox:imported"}) {
		t.Fatalf("list = %+v, %v", list, err)
	}
	evs := e.ev.list()
	if !slices.Equal(evs, []string{"image tag busybox:imported", "image import " + id}) {
		t.Fatalf("events = %q", evs)
	}
	// Importing the same tar again reuses the layer snapshot.
	id2, err := e.svc.ImageImport(ctx, bytes.NewReader(tarData), "", nil, "second", nil)
	if err != nil || id2 == id {
		t.Fatalf("second import: %s %v", id2, err)
	}
	if n := len(e.snap.names()); n != 1 {
		t.Fatalf("%d snapshots, want 1", n)
	}
	// Save, then load into a new store: same ID, and the layer blob digest is the diffID.
	var buf bytes.Buffer
	if err := e.svc.ImageSave(ctx, []string{"busybox:imported"}, &buf); err != nil {
		t.Fatal(err)
	}
	e2 := newEnv(t)
	out, err := e2.svc.ImageLoad(ctx, &buf, nil)
	if err != nil || !slices.Equal(out, []string{"Loaded image: busybox:imported"}) {
		t.Fatalf("load: %q %v", out, err)
	}
	if !slices.Contains(e2.blobs(t), strings.TrimPrefix(wantDiff, "sha256:")) {
		t.Fatal("layer blob digest changed in round trip")
	}
	ins2, err := e2.svc.ImageInspect(ctx, "busybox:imported")
	if err != nil || ins2.ID != id {
		t.Fatalf("reloaded %+v %v", ins2, err)
	}
}

func TestImportBadChanges(t *testing.T) {
	e := newEnv(t)
	for _, ch := range []string{"FROM scratch", "EXPOSE abc", "ENV", "STOPSIGNAL SIGNOPE", "ONBUILD FROM x", "LABEL =x", `ENV a="b`} {
		_, err := e.svc.ImageImport(context.Background(), bytes.NewReader(nil), "", []string{ch}, "", nil)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), strconv.Quote(ch)) {
			t.Errorf("change %q: err = %v", ch, err)
		}
	}
	if b := e.blobs(t); len(b) != 0 {
		t.Fatalf("blobs left: %v", b)
	}
}

func TestImportBadInputLeavesNothing(t *testing.T) {
	e := newEnv(t)
	_, err := e.svc.ImageImport(context.Background(), bytes.NewReader([]byte{0x1f, 0x8b, 1, 2, 3}), "x", nil, "", nil)
	if err == nil {
		t.Fatal("import of corrupt gzip succeeded")
	}
	if b := e.blobs(t); len(b) != 0 {
		t.Fatalf("blobs left: %v", b)
	}
	if s := e.snap.names(); len(s) != 0 {
		t.Fatalf("snapshots left: %v", s)
	}
	e.ingestEmpty(t)
}

func loadRandom(t *testing.T, e *env, layers int64, names ...string) (v1.Image, string) {
	t.Helper()
	img := randomImage(t, layers)
	m := map[string]v1.Image{}
	for _, n := range names {
		m[n] = img
	}
	if _, err := e.svc.ImageLoad(context.Background(), bytes.NewReader(dockerArchive(t, m)), nil); err != nil {
		t.Fatal(err)
	}
	return img, mustID(t, img)
}

func TestTagAndDelete(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, id := loadRandom(t, e, 2, "a:1")
	if err := e.svc.ImageTag(ctx, "a:1", "b", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.ImageTag(ctx, id[7:15], "example.com/c", "v2"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][2]string{{"a@sha256:" + strings.Repeat("a", 64), ""}, {"sha256", "x"}, {"UP", ""}, {"ok", "bad tag!"}} {
		if err := e.svc.ImageTag(ctx, "a:1", bad[0], bad[1]); !errdefs.IsInvalidArgument(err) {
			t.Errorf("tag %v: %v", bad, err)
		}
	}
	if err := e.svc.ImageTag(ctx, "nosuch", "x", ""); !errdefs.IsNotFound(err) || err.Error() != "No such image: nosuch:latest" {
		t.Fatalf("tag missing: %v", err)
	}
	ins, _ := e.svc.ImageInspect(ctx, "b")
	if !slices.Equal(ins.RepoTags, []string{"a:1", "b:latest", "example.com/c:v2"}) {
		t.Fatalf("tags = %v", ins.RepoTags)
	}
	// By ID with several repositories: conflict with Docker's message.
	_, err := e.svc.ImageDelete(ctx, id[7:19], false, false)
	want := "conflict: unable to delete " + id[7:19] + " (must be forced) - image is referenced in multiple repositories"
	if !errdefs.IsConflict(err) || err.Error() != want {
		t.Fatalf("delete by id: %v\nwant %s", err, want)
	}
	// By name: only untags.
	recs, err := e.svc.ImageDelete(ctx, "b", false, false)
	if err != nil || !slices.Equal(recs, []mobyimage.DeleteResponse{{Untagged: "b:latest"}}) {
		t.Fatalf("delete b: %+v %v", recs, err)
	}
	// In use: conflict unless forced.
	e.svc.SetInUse(func(x string) bool { return x == id })
	if _, err := e.svc.ImageDelete(ctx, id, false, false); !errdefs.IsConflict(err) {
		t.Fatalf("delete in use: %v", err)
	}
	if _, err := e.svc.ImagePrune(ctx, true, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ImageInspect(ctx, id); err != nil {
		t.Fatal("prune removed an image in use")
	}
	e.svc.SetInUse(nil)
	// Forced by ID: untags all and deletes image, layers and blobs.
	recs, err = e.svc.ImageDelete(ctx, id, true, false)
	if err != nil {
		t.Fatal(err)
	}
	var untagged, deleted int
	for _, r := range recs {
		if r.Untagged != "" {
			untagged++
		}
		if r.Deleted != "" {
			deleted++
		}
	}
	if untagged != 2 || deleted != 3 || recs[2].Deleted != id {
		t.Fatalf("records = %+v", recs)
	}
	if b := e.blobs(t); len(b) != 0 {
		t.Fatalf("blobs left: %v", b)
	}
	if s := e.snap.names(); len(s) != 0 {
		t.Fatalf("snapshots left: %v", s)
	}
	if _, err := e.svc.ImageDelete(ctx, "a:1", false, false); !errdefs.IsNotFound(err) || err.Error() != "No such image: a:1" {
		t.Fatalf("delete again: %v", err)
	}
	evs := e.ev.list()
	if !slices.Contains(evs, "image delete "+id) || !slices.Contains(evs, "image untag "+id) {
		t.Fatalf("events = %q", evs)
	}
}

func TestDeleteLastNameDeletesImageKeepingSharedLayers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, id := loadRandom(t, e, 1, "one:1")
	recs, err := e.svc.ImageDelete(ctx, "one:1", false, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[0].Untagged != "one:1" || recs[1].Deleted != id {
		t.Fatalf("records = %+v", recs)
	}
	// A container snapshot on top of a layer keeps that layer.
	_, id2 := loadRandom(t, e, 1, "two:1")
	ins, _ := e.svc.ImageInspect(ctx, id2)
	if _, err := e.snap.Prepare(ctx, "container-1", ins.RootFS.Layers[0], nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ImageDelete(ctx, "two:1", false, false); err != nil {
		t.Fatal(err)
	}
	if s := e.snap.names(); len(s) != 2 {
		t.Fatalf("snapshots = %v (the container's parent must stay)", s)
	}
	if err := e.svc.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if s := e.snap.names(); len(s) != 2 {
		t.Fatalf("GC removed a parent of a container snapshot: %v", s)
	}
}

func TestPruneAndList(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, keep := loadRandom(t, e, 1, "keep:1")
	_, dangling := loadRandom(t, e, 1, "d:1")
	// Re-tagging d:1 onto keep makes the old one dangling.
	if err := e.svc.ImageTag(ctx, keep, "d", "1"); err != nil {
		t.Fatal(err)
	}
	list, err := e.svc.ImageList(ctx, false, map[string][]string{"dangling": {"true"}})
	if err != nil || len(list) != 1 || list[0].ID != dangling || len(list[0].RepoTags) != 0 {
		t.Fatalf("dangling list = %+v %v", list, err)
	}
	list, err = e.svc.ImageList(ctx, false, map[string][]string{"reference": {"d*"}})
	if err != nil || len(list) != 1 || !slices.Equal(list[0].RepoTags, []string{"d:1"}) {
		t.Fatalf("reference list = %+v %v", list, err)
	}
	if _, err := e.svc.ImageList(ctx, false, map[string][]string{"bogus": {"1"}}); !errdefs.IsInvalidArgument(err) || err.Error() != "invalid filter 'bogus'" {
		t.Fatalf("bogus filter: %v", err)
	}
	if _, err := e.svc.ImageList(ctx, false, map[string][]string{"dangling": {"maybe"}}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("dangling=maybe: %v", err)
	}
	rep, err := e.svc.ImagePrune(ctx, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.ImagesDeleted) != 2 || rep.ImagesDeleted[0].Deleted != dangling || rep.SpaceReclaimed == 0 {
		t.Fatalf("prune = %+v", rep)
	}
	list, _ = e.svc.ImageList(ctx, false, nil)
	if len(list) != 1 || list[0].ID != keep {
		t.Fatalf("after prune: %+v", list)
	}
	rep, err = e.svc.ImagePrune(ctx, false, map[string][]string{"dangling": {"false"}})
	if err != nil || len(rep.ImagesDeleted) != 4 { // 2 untagged, image, layer
		t.Fatalf("prune all = %+v %v", rep, err)
	}
	if b := e.blobs(t); len(b) != 0 {
		t.Fatalf("blobs left: %v", b)
	}
}

func TestRecoveryAfterCrash(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, id := loadRandom(t, e, 2, "live:1")
	// Simulate a daemon killed mid-load: an ingest temp file, an orphan blob, a temporary
	// unpack snapshot and an orphan committed layer snapshot.
	root := e.root
	os.WriteFile(filepath.Join(root, "content", "ingest", "blob-123"), []byte("partial"), 0o644)
	orphan := sha256hex([]byte("orphan"))
	os.WriteFile(filepath.Join(root, "content", "blobs", "sha256", orphan), []byte("orphan"), 0o644)
	if _, err := e.snap.Prepare(ctx, "berth-image-unpack-deadbeef", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.snap.Prepare(ctx, "tmp", "", nil); err != nil {
		t.Fatal(err)
	}
	if err := e.snap.Commit(ctx, "sha256:"+orphan, "tmp", map[string]string{"berth.image.layer.diffid": "x"}); err != nil {
		t.Fatal(err)
	}
	// A container's snapshot is not the image service's business.
	if _, err := e.snap.Prepare(ctx, "container-x", "", nil); err != nil {
		t.Fatal(err)
	}
	before := len(e.blobs(t))
	e.reopen(t)
	e.ingestEmpty(t)
	if n := len(e.blobs(t)); n != before-1 {
		t.Fatalf("%d blobs, want %d", n, before-1)
	}
	names := e.snap.names()
	if slices.Contains(names, "berth-image-unpack-deadbeef") || slices.Contains(names, "sha256:"+orphan) || !slices.Contains(names, "container-x") {
		t.Fatalf("snapshots after recovery: %v", names)
	}
	if ins, err := e.svc.ImageInspect(ctx, "live:1"); err != nil || ins.ID != id {
		t.Fatalf("image lost in recovery: %v", err)
	}
}

func TestSaveErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.svc.ImageSave(ctx, []string{"nosuch:1"}, &bytes.Buffer{}); !errdefs.IsNotFound(err) {
		t.Fatalf("save missing: %v", err)
	}
	if err := e.svc.ImageSave(ctx, nil, &bytes.Buffer{}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("save nothing: %v", err)
	}
}
