package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func randomImage(t *testing.T, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(2048, layers)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func dockerArchive(t testing.TB, imgs map[string]v1.Image) []byte {
	t.Helper()
	refs := map[name.Reference]v1.Image{}
	for n, img := range imgs {
		tag, err := name.NewTag(n)
		if err != nil {
			t.Fatal(err)
		}
		refs[tag] = img
	}
	var buf bytes.Buffer
	if err := tarball.MultiRefWrite(refs, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mustID(t *testing.T, img v1.Image) string {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func diffIDs(t *testing.T, img v1.Image) []string {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range cf.RootFS.DiffIDs {
		out = append(out, d.String())
	}
	return out
}

func TestLoadDockerArchiveFromGGCR(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := randomImage(t, 3)
	data := dockerArchive(t, map[string]v1.Image{"example.com/foo/bar:v1": img, "busybox:latest": img})
	var progress int
	out, err := e.svc.ImageLoad(ctx, bytes.NewReader(data), func(m jsonMessage) { progress++ })
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	want := []string{"Loaded image: busybox:latest", "Loaded image: example.com/foo/bar:v1"}
	if !slices.Equal(out, want) {
		t.Fatalf("out = %q, want %q", out, want)
	}
	if progress == 0 {
		t.Error("no progress messages")
	}
	id := mustID(t, img)
	for _, ref := range []string{"busybox", "busybox:latest", "docker.io/library/busybox:latest", "example.com/foo/bar:v1",
		id, strings.TrimPrefix(id, "sha256:"), strings.TrimPrefix(id, "sha256:")[:12], id[:12]} {
		ins, err := e.svc.ImageInspect(ctx, ref)
		if err != nil {
			t.Fatalf("inspect %q: %v", ref, err)
		}
		if ins.ID != id {
			t.Fatalf("inspect %q: ID %s, want %s", ref, ins.ID, id)
		}
	}
	ins, _ := e.svc.ImageInspect(ctx, "busybox")
	if !slices.Equal(ins.RootFS.Layers, diffIDs(t, img)) || ins.RootFS.Type != "layers" {
		t.Fatalf("rootfs = %+v", ins.RootFS)
	}
	if !slices.Equal(ins.RepoTags, []string{"busybox:latest", "example.com/foo/bar:v1"}) {
		t.Fatalf("RepoTags = %v", ins.RepoTags)
	}
	if ins.Size <= 0 || ins.GraphDriver == nil || ins.GraphDriver.Name != "overlay2" {
		t.Fatalf("inspect = %+v", ins)
	}
	// One committed snapshot per layer, named by chainID, with the content extracted.
	snaps := e.snap.names()
	if len(snaps) != 3 {
		t.Fatalf("snapshots = %v", snaps)
	}
	layers, _ := img.Layers()
	d0, _ := layers[0].DiffID()
	ents, err := os.ReadDir(e.snap.dir(d0.String()))
	if err != nil || len(ents) != 1 || !strings.HasPrefix(ents[0].Name(), "random_file_") {
		t.Fatalf("layer 0 content = %v, %v", ents, err)
	}
	e.ingestEmpty(t)
	// Only the image's blobs stay: manifest, config, 3 layers (archive metadata is dropped).
	if n := len(e.blobs(t)); n != 5 {
		t.Fatalf("%d blobs, want 5", n)
	}
	// Loading again is idempotent.
	if _, err := e.svc.ImageLoad(ctx, bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	if n := len(e.blobs(t)); n != 5 {
		t.Fatalf("%d blobs after reload, want 5", n)
	}
	if _, err := e.svc.ImageInspect(ctx, "nosuch"); !errdefs.IsNotFound(err) || err.Error() != "No such image: nosuch:latest" {
		t.Fatalf("inspect nosuch: %v", err)
	}
	if _, err := e.svc.ImageInspect(ctx, "UPPER"); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("inspect UPPER: %v", err)
	}
}

func TestLoadOCILayoutFromGGCR(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := randomImage(t, 2)
	img2 := randomImage(t, 1)
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          "docker.io/library/alpine:3.20",
		"org.opencontainers.image.ref.name": "3.20",
	})); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img2, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "latest"})); err != nil {
		t.Fatal(err)
	}
	out, err := e.svc.ImageLoad(ctx, bytes.NewReader(tarDir(t, dir)), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Loaded image: alpine:3.20", "Loaded image ID: " + mustID(t, img2)}
	if !slices.Equal(out, want) {
		t.Fatalf("out = %q, want %q", out, want)
	}
	ins, err := e.svc.ImageInspect(ctx, "alpine:3.20")
	if err != nil || ins.ID != mustID(t, img) {
		t.Fatalf("inspect: %+v %v", ins, err)
	}
	// The original manifest is kept: its blob is in the store.
	md, _ := img.Digest()
	if !slices.Contains(e.blobs(t), md.Hex) {
		t.Fatal("original manifest blob not kept")
	}
	e.ingestEmpty(t)
}

func TestLoadCompressedArchiveAndZstdLayers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l, err := random.Layer(4096, types.OCILayerZStd)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "zs:1"})); err != nil {
		t.Fatal(err)
	}
	out, err := e.svc.ImageLoad(ctx, bytes.NewReader(tarDir(t, dir)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out, []string{"Loaded image: zs:1"}) {
		t.Fatalf("out = %q", out)
	}
	// Save converts the zstd layer to an uncompressed tar whose digest is the diffID.
	var buf bytes.Buffer
	if err := e.svc.ImageSave(ctx, []string{"zs:1"}, &buf); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "s.tar")
	if err := os.WriteFile(f, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("zs:1")
	got, err := tarball.ImageFromPath(f, &tag)
	if err != nil {
		t.Fatal(err)
	}
	if mustID(t, got) != mustID(t, img) || !slices.Equal(diffIDs(t, got), diffIDs(t, img)) {
		t.Fatal("save changed digests")
	}
}

func TestLoadBadArchives(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"garbage", []byte("this is not a tar archive at all, not even close, really not")},
		{"no manifest", tarFiles(t, map[string]string{"foo": "bar"})},
		{"bad manifest.json", tarFiles(t, map[string]string{"manifest.json": "{"})},
		{"missing config", tarFiles(t, map[string]string{"manifest.json": `[{"Config":"c.json","Layers":[]}]`})},
		{"wrong blob digest", tarFiles(t, map[string]string{"blobs/sha256/" + strings.Repeat("a", 64): "x"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			_, err := e.svc.ImageLoad(ctx, bytes.NewReader(tc.data), nil)
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("err = %v, want invalid argument", err)
			}
			if b := e.blobs(t); len(b) != 0 {
				t.Fatalf("blobs left: %v", b)
			}
			e.ingestEmpty(t)
		})
	}
}

func TestLoadDiffIDMismatchLeavesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := randomImage(t, 2)
	// Corrupt the config's second diffID.
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[1] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
	bad, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	data := dockerArchive(t, map[string]v1.Image{"bad:1": bad})
	_, err = e.svc.ImageLoad(ctx, bytes.NewReader(data), nil)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "diff ID") {
		t.Fatalf("err = %v", err)
	}
	if s := e.snap.names(); len(s) != 0 {
		t.Fatalf("snapshots left: %v", s)
	}
	if b := e.blobs(t); len(b) != 0 {
		t.Fatalf("blobs left: %v", b)
	}
	e.ingestEmpty(t)
	if _, err := e.svc.ImageInspect(ctx, "bad:1"); !errdefs.IsNotFound(err) {
		t.Fatalf("inspect: %v", err)
	}
}

// countingSnapshotter counts Prepare calls per parent chain to observe unpacks.
func TestConcurrentLoadsUnpackSharedLayerOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	base, err := random.Layer(1<<20, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	var archives [][]byte
	for i := range 4 {
		top, err := random.Layer(1024, types.DockerLayer)
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(empty.Image, base, top)
		if err != nil {
			t.Fatal(err)
		}
		archives = append(archives, dockerArchive(t, map[string]v1.Image{"img:" + string(rune('a'+i)): img}))
	}
	var wg sync.WaitGroup
	errs := make([]error, len(archives))
	for i, a := range archives {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.svc.ImageLoad(ctx, bytes.NewReader(a), nil)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// 1 shared base + 4 tops.
	if e.snap.prepares != 5 {
		t.Fatalf("%d unpacks, want 5", e.snap.prepares)
	}
	if n := len(e.snap.names()); n != 5 {
		t.Fatalf("%d snapshots, want 5", n)
	}
}

func TestSaveRoundTrip(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := randomImage(t, 3)
	if _, err := e.svc.ImageLoad(ctx, bytes.NewReader(dockerArchive(t, map[string]v1.Image{"rt:1": img, "rt:2": img})), nil); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := e.svc.ImageSave(ctx, []string{"rt"}, &buf); err != nil {
		t.Fatal(err)
	}
	saved := buf.Bytes()
	f := filepath.Join(t.TempDir(), "save.tar")
	if err := os.WriteFile(f, saved, 0o644); err != nil {
		t.Fatal(err)
	}
	// docker-archive reader.
	for _, tg := range []string{"rt:1", "rt:2"} {
		tag, _ := name.NewTag(tg)
		got, err := tarball.ImageFromPath(f, &tag)
		if err != nil {
			t.Fatal(err)
		}
		if mustID(t, got) != mustID(t, img) || !slices.Equal(diffIDs(t, got), diffIDs(t, img)) {
			t.Fatal("docker-archive read back with different digests")
		}
		if err := validateImage(got); err != nil {
			t.Fatal(err)
		}
	}
	// OCI layout reader.
	dir := t.TempDir()
	untar(t, saved, dir)
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	ii, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 || im.Manifests[0].Annotations["io.containerd.image.name"] != "docker.io/library/rt:1" ||
		im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "1" {
		t.Fatalf("index = %+v", im.Manifests)
	}
	oimg, err := lp.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateImage(oimg); err != nil {
		t.Fatal(err)
	}
	if mustID(t, oimg) != mustID(t, img) {
		t.Fatal("OCI layout read back with a different config")
	}
	// Layers are saved uncompressed, as Docker does: their digests are the diffIDs.
	ols, _ := oimg.Layers()
	for i, l := range ols {
		d, _ := l.Digest()
		mt, _ := l.MediaType()
		if d.String() != diffIDs(t, img)[i] || mt != types.OCIUncompressedLayer {
			t.Fatalf("layer %d: %s %s, want uncompressed diffID", i, mt, d)
		}
	}
	for _, f := range []string{"manifest.json", "index.json", "oci-layout", "repositories"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	// Load the saved archive into a fresh store: same ID, diffIDs and (uncompressed) layer digests.
	e2 := newEnv(t)
	out, err := e2.svc.ImageLoad(ctx, bytes.NewReader(saved), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out, []string{"Loaded image: rt:1", "Loaded image: rt:2"}) {
		t.Fatalf("out = %q", out)
	}
	ins, err := e2.svc.ImageInspect(ctx, "rt:2")
	if err != nil || ins.ID != mustID(t, img) || !slices.Equal(ins.RootFS.Layers, diffIDs(t, img)) {
		t.Fatalf("reloaded: %+v %v", ins, err)
	}
	// Saving again from the second store is byte-identical.
	var buf2 bytes.Buffer
	if err := e2.svc.ImageSave(ctx, []string{"rt:1", "rt:2"}, &buf2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(saved, buf2.Bytes()) {
		t.Fatal("save is not reproducible across a load")
	}
}

// TestLoadLegacyDockerSave loads the pre-25 `docker save` layout: <id>/layer.tar files, a
// symlink for a repeated layer, <hex>.json config and manifest.json.
func TestLoadLegacyDockerSave(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l, err := random.Layer(1000, types.DockerUncompressedLayer)
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := l.Uncompressed()
	layerTar, _ := io.ReadAll(rc)
	rc.Close()
	d := "sha256:" + sha256hex(layerTar)
	cfg := `{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["` + d + `","` + d + `"]},` +
		`"history":[{"created_by":"ADD a"},{"created_by":"ENV x=y","empty_layer":true},{"created_by":"ADD b"}]}`
	cfgHex := sha256hex([]byte(cfg))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, data string) {
		h.Size = int64(len(data))
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(data))
	}
	add(&tar.Header{Name: "l1/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "l1/VERSION", Mode: 0o644}, "1.0")
	add(&tar.Header{Name: "l1/json", Mode: 0o644}, "{}")
	add(&tar.Header{Name: "l1/layer.tar", Mode: 0o644}, string(layerTar))
	add(&tar.Header{Name: "l2/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	if err := tw.WriteHeader(&tar.Header{Name: "l2/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../l1/layer.tar"}); err != nil {
		t.Fatal(err)
	}
	add(&tar.Header{Name: cfgHex + ".json", Mode: 0o644}, cfg)
	add(&tar.Header{Name: "manifest.json", Mode: 0o644}, `[{"Config":"`+cfgHex+`.json","RepoTags":["legacy:1"],"Layers":["l1/layer.tar","l2/layer.tar"]}]`)
	add(&tar.Header{Name: "repositories", Mode: 0o644}, `{"legacy":{"1":"l2"}}`)
	tw.Close()
	out, err := e.svc.ImageLoad(ctx, &buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out, []string{"Loaded image: legacy:1"}) {
		t.Fatalf("out = %q", out)
	}
	ins, err := e.svc.ImageInspect(ctx, "legacy:1")
	if err != nil || ins.ID != "sha256:"+cfgHex || len(ins.RootFS.Layers) != 2 {
		t.Fatalf("inspect %+v %v", ins, err)
	}
	hist, err := e.svc.ImageHistory(ctx, "legacy:1")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 3 || hist[0].CreatedBy != "ADD b" || hist[0].ID != ins.ID || hist[1].Size != 0 || hist[1].ID != "<missing>" ||
		hist[2].Size == 0 || hist[2].ID != "<missing>" {
		t.Fatalf("history = %+v", hist)
	}
	// Blobs: the layer (shared by both positions), config and a synthesized manifest.
	if n := len(e.blobs(t)); n != 3 {
		t.Fatalf("%d blobs, want 3", n)
	}
	if n := len(e.snap.names()); n != 2 {
		t.Fatalf("%d snapshots, want 2", n)
	}
}
