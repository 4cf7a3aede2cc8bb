package image_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/registry"
)

// newEnvWithHub is newEnv with Docker Hub settings.
func newEnvWithHub(t *testing.T, hub image.HubConfig) *env {
	t.Helper()
	e := newEnv(t)
	svc, err := image.New(context.Background(), image.Options{Root: e.root, DB: e.db, Snapshotter: e.snap, Events: e.ev, Hub: hub})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	return e
}

// unreachable is a registry URL nothing listens on (connection refused).
const unreachable = "http://127.0.0.1:1"

// writeCounter counts requests that would change a registry (uploads, manifest puts).
type writeCounter struct{ n atomic.Int64 }

func (c *writeCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			c.n.Add(1)
		}
		h.ServeHTTP(w, r)
	})
}

func TestPullThroughMirror(t *testing.T) {
	ctx := context.Background()
	var writes writeCounter
	mirror := startRegistry(t, writes.wrap)
	img := randomImage(t, 2)
	md := writeRemote(t, mirror+"/library/busybox:latest", img)
	wrote := writes.n.Load()

	e := newEnvWithHub(t, image.HubConfig{Mirrors: []string{"http://" + mirror}, Endpoint: unreachable})
	image.SetRetryBase(e.svc, 1)
	var pm messages
	id, err := e.svc.Pull(ctx, "busybox:latest", "", nil, pm.add)
	if err != nil {
		t.Fatalf("pull through the mirror: %v", err)
	}
	if id != mustID(t, img) {
		t.Fatalf("pulled %s, want %s", id, mustID(t, img))
	}
	pm.want(t, "latest: Pulling from library/busybox", "Digest: "+md.String(), "Status: Downloaded newer image for busybox:latest")
	ins, err := e.svc.ImageInspect(ctx, "busybox")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ins.RepoTags, []string{"busybox:latest"}) || !slices.Equal(ins.RepoDigests, []string{"busybox@" + md.String()}) {
		t.Fatalf("names after a mirror pull: %v %v", ins.RepoTags, ins.RepoDigests)
	}

	// Pushes never go to a mirror: Docker Hub is unreachable, so this fails.
	if err := e.svc.Push(ctx, "busybox:latest", nil, nil); err == nil {
		t.Fatal("push of a Docker Hub image succeeded with Docker Hub unreachable")
	}
	if n := writes.n.Load(); n != wrote {
		t.Fatalf("push sent %d write requests to the mirror", n-wrote)
	}
	// Other registries do not use the mirrors.
	if _, err := e.svc.Pull(ctx, "127.0.0.1:1/library/busybox:latest", "", nil, nil); err == nil {
		t.Fatal("pull from an unreachable registry succeeded through a Docker Hub mirror")
	}
}

func TestPullFallsBackPastBrokenMirrors(t *testing.T) {
	ctx := context.Background()
	good := startRegistry(t, nil)
	img := randomImage(t, 1)
	writeRemote(t, good+"/library/busybox:1.36", img)

	var fiveHundreds atomic.Int64
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fiveHundreds.Add(1)
		http.Error(w, "broken", http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	empty := startRegistry(t, nil)                           // 404 manifest unknown
	locked := startRegistry(t, basicAuth("someone", "else")) // refuses anonymous access
	withOther := startRegistry(t, nil)                       // has the repository, not the tag
	writeRemote(t, withOther+"/library/busybox:other", randomImage(t, 1))

	e := newEnvWithHub(t, image.HubConfig{
		Mirrors:  []string{unreachable, failing.URL, "http://" + empty, "http://" + locked, "http://" + withOther, "http://" + good + "/"},
		Endpoint: unreachable,
	})
	image.SetRetryBase(e.svc, 1)
	id, err := e.svc.Pull(ctx, "busybox:1.36", "", nil, nil)
	if err != nil {
		t.Fatalf("pull past broken mirrors: %v", err)
	}
	if id != mustID(t, img) {
		t.Fatalf("pulled %s, want %s", id, mustID(t, img))
	}
	if fiveHundreds.Load() == 0 {
		t.Fatal("the failing mirror was not tried")
	}

	// With every endpoint failing the error is Docker Hub's.
	e2 := newEnvWithHub(t, image.HubConfig{Mirrors: []string{"http://" + empty}, Endpoint: unreachable})
	if _, err := e2.svc.Pull(ctx, "busybox:1.36", "", nil, nil); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("pull with no working endpoint: %v", err)
	}
	if n := len(e2.blobs(t)); n != 0 {
		t.Fatalf("%d blobs left after a failed pull", n)
	}
}

func TestInvalidMirrorIsRejected(t *testing.T) {
	e := newEnv(t)
	for _, m := range []string{"mirror.example", "ftp://mirror.example", "https://u:p@mirror.example", "https://mirror.example/path", "https://mirror.example/?q=1", "https://"} {
		_, err := image.New(context.Background(), image.Options{Root: e.root, DB: e.db, Snapshotter: e.snap, Hub: image.HubConfig{Mirrors: []string{m}}})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "invalid mirror") {
			t.Errorf("mirror %q: %v, want invalid mirror", m, err)
		}
	}
}

func TestRegistryConfigShape(t *testing.T) {
	e := newEnv(t)
	svc, err := image.New(context.Background(), image.Options{Root: e.root, DB: e.db, Snapshotter: e.snap,
		InsecureRegistries: []string{"reg.lan:5000", "10.1.0.0/16", "10.1.2.3/16"},
		Hub:                image.HubConfig{Mirrors: []string{"https://mirror.gcr.io", "http://10.0.0.5:5000/", "https://mirror.gcr.io/"}}})
	if err != nil {
		t.Fatal(err)
	}
	rc := svc.RegistryConfig()
	wantMirrors := []string{"https://mirror.gcr.io/", "http://10.0.0.5:5000/"}
	if !slices.Equal(rc.Mirrors, wantMirrors) {
		t.Errorf("Mirrors = %v, want %v", rc.Mirrors, wantMirrors)
	}
	var cidrs []string
	for _, p := range rc.InsecureRegistryCIDRs {
		cidrs = append(cidrs, p.String())
	}
	if want := []string{"::1/128", "127.0.0.0/8", "10.1.0.0/16"}; !slices.Equal(cidrs, want) {
		t.Errorf("InsecureRegistryCIDRs = %v, want %v", cidrs, want)
	}
	hub := rc.IndexConfigs["docker.io"]
	if hub == nil || hub.Name != "docker.io" || !hub.Secure || !hub.Official || !slices.Equal(hub.Mirrors, wantMirrors) {
		t.Errorf("docker.io index = %+v", hub)
	}
	lan := rc.IndexConfigs["reg.lan:5000"]
	if lan == nil || lan.Name != "reg.lan:5000" || lan.Secure || lan.Official {
		t.Errorf("reg.lan:5000 index = %+v", lan)
	}
	if len(rc.IndexConfigs) != 2 {
		t.Errorf("IndexConfigs = %v", rc.IndexConfigs)
	}
}

func TestPullAllTags(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	host := startRegistry(t, nil)
	a, b := randomImage(t, 1), randomImage(t, 2)
	writeRemote(t, host+"/x/y:v1", a)
	writeRemote(t, host+"/x/y:v2", b)
	writeRemote(t, host+"/x/y:v1-again", a)
	writeRemote(t, host+"/x/other:v9", randomImage(t, 1))

	var pm messages
	id, err := e.svc.Pull(ctx, host+"/x/y", "", nil, pm.add)
	if err != nil {
		t.Fatal(err)
	}
	if id != mustID(t, a) && id != mustID(t, b) {
		t.Fatalf("pull --all-tags returned %s", id)
	}
	pm.want(t, "v1: Pulling from x/y", "v2: Pulling from x/y", "v1-again: Pulling from x/y", "Status: Downloaded newer image for "+host+"/x/y")
	if strings.Count(pm.text(), "Status: ") != 1 {
		t.Errorf("want one status line:\n%s", pm.text())
	}
	list, err := e.svc.ImageList(ctx, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, s := range list {
		tags = append(tags, s.RepoTags...)
	}
	slices.Sort(tags)
	if want := []string{host + "/x/y:v1", host + "/x/y:v1-again", host + "/x/y:v2"}; len(list) != 2 || !slices.Equal(tags, want) {
		t.Fatalf("after pull --all-tags: %d images, tags %v", len(list), tags)
	}
	var again messages
	if _, err := e.svc.Pull(ctx, host+"/x/y", "", nil, again.add); err != nil {
		t.Fatal(err)
	}
	again.want(t, "Status: Image is up to date for "+host+"/x/y")
	if _, err := e.svc.Pull(ctx, host+"/x/none", "", nil, nil); !errdefs.IsNotFound(err) {
		t.Fatalf("pull --all-tags of a missing repository: %v", err)
	}
}

func TestPushAllTags(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	src, dst := startRegistry(t, nil), startRegistry(t, nil)
	a, b := randomImage(t, 1), randomImage(t, 1)
	writeRemote(t, src+"/p/a:1", a)
	writeRemote(t, src+"/p/b:1", b)
	for _, r := range []string{src + "/p/a:1", src + "/p/b:1"} {
		if _, err := e.svc.Pull(ctx, r, "", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	for tag, from := range map[string]string{"one": src + "/p/a:1", "two": src + "/p/b:1", "three": src + "/p/a:1"} {
		if err := e.svc.ImageTag(ctx, from, dst+"/all/repo", tag); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.svc.ImageTag(ctx, src+"/p/a:1", dst+"/all/repo-not-this", "x"); err != nil {
		t.Fatal(err)
	}
	var pm messages
	if err := e.svc.Push(ctx, dst+"/all/repo", nil, pm.add); err != nil {
		t.Fatal(err)
	}
	pm.want(t, "one: digest: ", "two: digest: ", "three: digest: ")
	if strings.Count(pm.text(), "The push refers to repository") != 1 {
		t.Errorf("want one header line:\n%s", pm.text())
	}
	repo, err := name.NewRepository(dst + "/all/repo")
	if err != nil {
		t.Fatal(err)
	}
	tags, err := remote.List(repo)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(tags)
	if !slices.Equal(tags, []string{"one", "three", "two"}) {
		t.Fatalf("registry tags = %v", tags)
	}
	if other, err := remote.List(repo.Registry.Repo("all/repo-not-this")); err == nil && len(other) != 0 {
		t.Fatalf("pushed another repository's tags: %v", other)
	}
	if err := e.svc.Push(ctx, dst+"/all/nothing", nil, nil); !errdefs.IsNotFound(err) {
		t.Fatalf("push --all-tags with no local tags: %v", err)
	}
}

// startBerthRegistry runs berth's own registry (per-repository blobs, cross-repository mounts).
func startBerthRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	reg, err := registry.New(registry.Config{Root: filepath.Join(t.TempDir(), "registry")})
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = reg
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		_ = reg.Close()
	})
	return strings.TrimPrefix(srv.URL, "http://")
}

// loadArchive loads img from a docker-archive under ref.
func loadArchive(t *testing.T, e *env, ref string, img v1.Image) {
	t.Helper()
	if _, err := e.svc.ImageLoad(context.Background(), bytes.NewReader(dockerArchive(t, map[string]v1.Image{ref: img})), nil); err != nil {
		t.Fatal(err)
	}
}

func TestPushMountsFromAnotherRepository(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var writes writeCounter
	host := startBerthRegistry(t, writes.wrap)
	img := randomImage(t, 2)
	loadArchive(t, e, host+"/repo1:v1", img)

	var first messages
	if err := e.svc.Push(ctx, host+"/repo1:v1", nil, first.add); err != nil {
		t.Fatal(err)
	}
	first.want(t, "Pushed")
	if err := e.svc.ImageTag(ctx, host+"/repo1:v1", host+"/team/repo2", "v1"); err != nil {
		t.Fatal(err)
	}
	var second messages
	if err := e.svc.Push(ctx, host+"/team/repo2:v1", nil, second.add); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(second.text(), "Mounted from repo1"); got != 2 {
		t.Fatalf("want both layers mounted from repo1:\n%s", second.text())
	}
	if strings.Contains(second.text(), "Pushing") {
		t.Fatalf("the second push uploaded layers:\n%s", second.text())
	}
	// The registry serves the image from the new repository.
	r, _ := name.ParseReference(host + "/team/repo2:v1")
	rimg, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateImage(rimg); err != nil {
		t.Fatal(err)
	}

	// A pulled image mounts from the repository it came from; a registry that refuses the
	// mount (the blob is gone from the source) gets an ordinary upload.
	e2 := newEnv(t)
	if _, err := e2.svc.Pull(ctx, host+"/team/repo2:v1", "", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := e2.svc.ImageTag(ctx, host+"/team/repo2:v1", host+"/repo3", "v1"); err != nil {
		t.Fatal(err)
	}
	var third messages
	if err := e2.svc.Push(ctx, host+"/repo3:v1", nil, third.add); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(third.text(), "Mounted from team/repo2"); got != 2 {
		t.Fatalf("want both layers mounted from team/repo2:\n%s", third.text())
	}
}

func TestPushFallsBackWhenMountRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// The registry never sees the mount parameters, so it answers 202 and expects an upload.
	var mounts atomic.Int64
	host := startBerthRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Query().Get("mount") != "" {
				mounts.Add(1)
				q := r.URL.Query()
				q.Del("mount")
				q.Del("from")
				r.URL.RawQuery = q.Encode()
			}
			h.ServeHTTP(w, r)
		})
	})
	img := randomImage(t, 1)
	loadArchive(t, e, host+"/a:v1", img)
	if err := e.svc.Push(ctx, host+"/a:v1", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.ImageTag(ctx, host+"/a:v1", host+"/b", "v1"); err != nil {
		t.Fatal(err)
	}
	var pm messages
	if err := e.svc.Push(ctx, host+"/b:v1", nil, pm.add); err != nil {
		t.Fatal(err)
	}
	if mounts.Load() == 0 {
		t.Fatal("no mount was attempted")
	}
	pm.want(t, "Pushed")
	if strings.Contains(pm.text(), "Mounted from") {
		t.Fatalf("reported a mount the registry refused:\n%s", pm.text())
	}
	r, _ := name.ParseReference(host + "/b:v1")
	rimg, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateImage(rimg); err != nil {
		t.Fatal(err)
	}
}

// An image loaded from a docker-archive, pushed, removed and pulled back keeps its ID, and its
// RepoDigest is the digest of the manifest as pushed.
func TestLoadPushRemovePullKeepsDigests(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	host := startBerthRegistry(t, nil)
	img := randomImage(t, 2)
	ref := host + "/loaded/img:v1"
	loadArchive(t, e, ref, img)
	before, err := e.svc.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Push(ctx, ref, nil, nil); err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(ref)
	head, err := remote.Head(r)
	if err != nil {
		t.Fatal(err)
	}
	wantRD := host + "/loaded/img@" + head.Digest.String()
	pushed, err := e.svc.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pushed.RepoDigests, []string{wantRD}) {
		t.Fatalf("RepoDigests after push = %v, want [%s]", pushed.RepoDigests, wantRD)
	}
	if _, err := e.svc.ImageDelete(ctx, ref, true, false); err != nil {
		t.Fatal(err)
	}
	id, err := e.svc.Pull(ctx, ref, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id != before.ID {
		t.Fatalf("pulled back %s, loaded %s", id, before.ID)
	}
	after, err := e.svc.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(after.RepoDigests, []string{wantRD}) || after.ID != before.ID {
		t.Fatalf("after pull: ID %s RepoDigests %v, want %s [%s]", after.ID, after.RepoDigests, before.ID, wantRD)
	}
	rimg, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateImage(rimg); err != nil {
		t.Fatal(err)
	}
}

func TestPushMountsWithCredentials(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	host := startBerthRegistry(t, basicAuth("alice", "pw"))
	auth := &authn.Basic{Username: "alice", Password: "pw"}
	loadArchive(t, e, host+"/one:v1", randomImage(t, 1))
	if err := e.svc.Push(ctx, host+"/one:v1", auth, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.ImageTag(ctx, host+"/one:v1", host+"/two", "v1"); err != nil {
		t.Fatal(err)
	}
	var pm messages
	if err := e.svc.Push(ctx, host+"/two:v1", auth, pm.add); err != nil {
		t.Fatal(err)
	}
	pm.want(t, "Mounted from one")
}
