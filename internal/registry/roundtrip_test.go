package registry

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func randomImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func imageDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	out := []string{d.String(), cfg.String()}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		ld, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ld.String())
	}
	return out
}

// TestRoundTripGGCR pushes and pulls images, an index and a referrer with
// go-containerregistry, the client berth itself uses, then deletes and collects garbage.
func TestRoundTripGGCR(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	repo := tr.host() + "/test/app"

	img := randomImage(t)
	if err := remote.Write(ref(t, repo+":v1"), img); err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Image(ref(t, repo+":v1"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	got, err := pulled.Digest()
	if err != nil || got != want {
		t.Fatalf("pulled digest %v, pushed %v (%v)", got, want, err)
	}
	// layers come back intact (ggcr verifies the digests while reading)
	layers, _ := pulled.Layers()
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := drain(rc); err != nil {
			t.Fatalf("layer: %v", err)
		}
	}

	// an index of two images, pushed to another repository (its blobs get mounted)
	idx, err := random.Index(1024, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref(t, tr.host()+"/test/index:multi"), idx); err != nil {
		t.Fatal(err)
	}
	pidx, err := remote.Index(ref(t, tr.host()+"/test/index:multi"))
	if err != nil {
		t.Fatal(err)
	}
	wantIdx, _ := idx.Digest()
	if gotIdx, _ := pidx.Digest(); gotIdx != wantIdx {
		t.Fatalf("index digest %v, want %v", gotIdx, wantIdx)
	}
	im, _ := pidx.IndexManifest()
	for _, m := range im.Manifests {
		child, err := pidx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := child.Digest(); d != m.Digest {
			t.Fatalf("child digest %v, want %v", d, m.Digest)
		}
	}

	// tag list pagination through ggcr's Link-following lister
	for i := range 7 {
		if err := remote.Tag(ref(t, fmt.Sprintf("%s:t%d", repo, i)).(name.Tag), img); err != nil {
			t.Fatal(err)
		}
	}
	tags, err := remote.List(ref(t, repo).Context(), remote.WithPageSize(3))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(tags, ",") != "t0,t1,t2,t3,t4,t5,t6,v1" {
		t.Fatalf("tags %v", tags)
	}

	// a referrer artifact with a subject
	desc, err := remote.Head(ref(t, repo+":v1"))
	if err != nil {
		t.Fatal(err)
	}
	art := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	art = mutate.ConfigMediaType(art, types.MediaType("application/vnd.example.sbom"))
	art = mutate.Annotations(art, map[string]string{"org.example": "yes"}).(v1.Image)
	art = mutate.Subject(art, *desc).(v1.Image)
	artDigest, _ := art.Digest()
	if err := remote.Write(ref(t, repo+"@"+artDigest.String()), art); err != nil {
		t.Fatal(err)
	}
	refs, err := remote.Referrers(ref(t, repo+"@"+want.String()).(name.Digest))
	if err != nil {
		t.Fatal(err)
	}
	rm, _ := refs.IndexManifest()
	if len(rm.Manifests) != 1 || rm.Manifests[0].Digest != artDigest || rm.Manifests[0].ArtifactType != "application/vnd.example.sbom" ||
		rm.Manifests[0].Annotations["org.example"] != "yes" {
		t.Fatalf("referrers %+v", rm.Manifests)
	}

	// a second image, then deleted: its content becomes garbage
	img2 := randomImage(t)
	if err := remote.Write(ref(t, repo+":doomed"), img2); err != nil {
		t.Fatal(err)
	}
	d2, _ := img2.Digest()
	if err := remote.Delete(ref(t, repo+"@"+d2.String())); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(ref(t, repo+":doomed")); err == nil {
		t.Fatal("deleted image still pullable")
	}
	// and a lone blob no manifest uses
	lone := tr.pushBlob("test/app", []byte("lone blob"))

	tr.close()

	// GC refuses while a server holds the root
	busy, err := New(Config{Root: tr.root})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GarbageCollect(context.Background(), GCOptions{Root: tr.root}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("GC next to a server: %v", err)
	}
	_ = busy.Close()

	before := storedDigests(t, tr.root)
	wantGone := append(imageDigests(t, img2), lone)
	sort.Strings(wantGone)
	dry, err := GarbageCollect(context.Background(), GCOptions{Root: tr.root, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dry.Blobs, wantGone) || !slices.Equal(storedDigests(t, tr.root), before) {
		t.Fatalf("dry run: would delete %v, want %v", dry.Blobs, wantGone)
	}
	res, err := GarbageCollect(context.Background(), GCOptions{Root: tr.root})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Blobs, wantGone) || len(res.Manifests) != 0 {
		t.Fatalf("GC deleted %v and manifests %v, want blobs %v", res.Blobs, res.Manifests, wantGone)
	}
	after := storedDigests(t, tr.root)
	for _, d := range before {
		if slices.Contains(wantGone, d) == slices.Contains(after, d) {
			t.Fatalf("blob %s: kept=%v, want kept=%v", d, slices.Contains(after, d), !slices.Contains(wantGone, d))
		}
	}

	// everything that was kept still pulls
	tr2 := newTestRegistry(t, Config{Root: tr.root})
	repo = tr2.host() + "/test/app"
	for _, r := range []string{repo + ":v1", repo + "@" + artDigest.String()} {
		img, err := remote.Image(ref(t, r))
		if err != nil {
			t.Fatal(err)
		}
		if err := validateImage(img); err != nil {
			t.Fatalf("%s after GC: %v", r, err)
		}
	}
	if _, err := remote.Index(ref(t, tr2.host()+"/test/index:multi")); err != nil {
		t.Fatal(err)
	}

	// untag everything in test/app but keep the artifact's subject untagged: with
	// --delete-untagged both the subject and its referrer go
	for _, tag := range tags {
		if err := remote.Delete(ref(t, repo+":"+tag)); err != nil {
			t.Fatal(err)
		}
	}
	tr2.close()
	res, err = GarbageCollect(context.Background(), GCOptions{Root: tr.root, DeleteUntagged: true})
	if err != nil {
		t.Fatal(err)
	}
	wantMan := []string{"test/app@" + artDigest.String(), "test/app@" + want.String()}
	sort.Strings(wantMan)
	sort.Strings(res.Manifests)
	if !slices.Equal(res.Manifests, wantMan) {
		t.Fatalf("delete-untagged removed manifests %v, want %v", res.Manifests, wantMan)
	}
	for _, d := range imageDigests(t, img) {
		if slices.Contains(storedDigests(t, tr.root), d) {
			t.Fatalf("untagged image content %s survived", d)
		}
	}
}

func validateImage(img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		if _, err := drain(rc); err != nil {
			return err
		}
	}
	_, err = img.RawConfigFile()
	return err
}

// storedDigests lists the content under blobs/.
func storedDigests(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	for _, alg := range []string{algSHA256, algSHA512} {
		entries, err := os.ReadDir(filepath.Join(root, blobsDir, alg))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			out = append(out, alg+":"+e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// drain reads a stream to its end, which makes ggcr verify its digest.
func drain(rc io.ReadCloser) (int64, error) {
	defer rc.Close()
	return io.Copy(io.Discard, rc)
}

func mustDigest(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}
