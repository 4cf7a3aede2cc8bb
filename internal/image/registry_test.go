package image_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-dev/berth/internal/api"
	"github.com/berth-dev/berth/internal/image"
)

// The service serves the API's pull, push and login endpoints.
var _ api.RegistryBackend = (*image.Service)(nil)

// startRegistry runs go-containerregistry's in-memory registry on 127.0.0.1, optionally behind
// wrap, and returns its host:port.
func startRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func writeRemote(t *testing.T, ref string, img v1.Image, opts ...remote.Option) v1.Hash {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// messages collects progress as "ID: Status" lines.
type messages struct {
	mu    sync.Mutex
	lines []string
}

func (m *messages) add(msg jsonMessage) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := msg.Status
	if msg.ID != "" {
		s = msg.ID + ": " + s
	}
	if msg.Aux != nil {
		s = "aux: " + string(*msg.Aux)
	}
	m.lines = append(m.lines, s)
}

func (m *messages) text() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.Join(m.lines, "\n")
}

func (m *messages) want(t *testing.T, subs ...string) {
	t.Helper()
	txt := m.text()
	for _, s := range subs {
		if !strings.Contains(txt, s) {
			t.Errorf("progress lacks %q:\n%s", s, txt)
		}
	}
}

func TestPullPushRoundTrip(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	host := startRegistry(t, nil)
	img := randomImage(t, 3)
	md := writeRemote(t, host+"/src/img:v1", img)
	id := mustID(t, img)

	var pm messages
	got, err := e.svc.Pull(ctx, host+"/src/img:v1", "", nil, pm.add)
	if err != nil {
		t.Fatal(err)
	}
	if got != id {
		t.Fatalf("pulled ID %s, want %s", got, id)
	}
	pm.want(t, "v1: Pulling from src/img", "Pulling fs layer", "Downloading", "Verifying Checksum", "Download complete",
		"Extracting", "Pull complete", "Digest: "+md.String(), "Status: Downloaded newer image for "+host+"/src/img:v1")
	ins, err := e.svc.ImageInspect(ctx, host+"/src/img:v1")
	if err != nil {
		t.Fatal(err)
	}
	if wantRD := host + "/src/img@" + md.String(); len(ins.RepoDigests) != 1 || ins.RepoDigests[0] != wantRD {
		t.Fatalf("RepoDigests = %v, want [%s]", ins.RepoDigests, wantRD)
	}
	if _, err := e.svc.ImageInspect(ctx, host+"/src/img@"+md.String()); err != nil {
		t.Fatalf("inspect by digest: %v", err)
	}

	// A second pull downloads nothing.
	var again messages
	if _, err := e.svc.Pull(ctx, host+"/src/img:v1", "", nil, again.add); err != nil {
		t.Fatal(err)
	}
	again.want(t, "Already exists", "Status: Image is up to date for "+host+"/src/img:v1")
	if strings.Contains(again.text(), "Downloading") {
		t.Errorf("second pull downloaded:\n%s", again.text())
	}

	// Push to another registry (the test registry shares blobs between repositories), delete
	// everything locally, pull it back.
	dst := startRegistry(t, nil)
	if err := e.svc.ImageTag(ctx, host+"/src/img:v1", dst+"/dst/x", "v2"); err != nil {
		t.Fatal(err)
	}
	var push messages
	if err := e.svc.Push(ctx, dst+"/dst/x:v2", nil, push.add); err != nil {
		t.Fatal(err)
	}
	push.want(t, "The push refers to repository ["+dst+"/dst/x]", "Preparing", "Pushing", "Pushed",
		fmt.Sprintf("v2: digest: %s size: ", md), `aux: {"Tag":"v2","Digest":"`+md.String())
	var push2 messages
	if err := e.svc.Push(ctx, dst+"/dst/x:v2", nil, push2.add); err != nil {
		t.Fatal(err)
	}
	push2.want(t, "Layer already exists")
	ins, err = e.svc.ImageInspect(ctx, dst+"/dst/x:v2")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(ins.RepoDigests, " "), dst+"/dst/x@"+md.String()) {
		t.Errorf("RepoDigests after push = %v", ins.RepoDigests)
	}
	if _, err := e.svc.ImageDelete(ctx, id, true, false); err != nil {
		t.Fatal(err)
	}
	if n := len(e.blobs(t)); n != 0 {
		t.Fatalf("%d blobs left after delete", n)
	}
	var back messages
	got, err = e.svc.Pull(ctx, dst+"/dst/x:v2", "", nil, back.add)
	if err != nil {
		t.Fatal(err)
	}
	if got != id {
		t.Fatalf("pulled back ID %s, want %s", got, id)
	}
	back.want(t, "Digest: "+md.String())
	// The registry serves the same image the store had.
	r, _ := name.ParseReference(dst + "/dst/x:v2")
	rimg, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateImage(rimg); err != nil {
		t.Fatal(err)
	}
	e.ingestEmpty(t)
}

func TestPullByDigestAndMissing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	host := startRegistry(t, nil)
	img := randomImage(t, 1)
	md := writeRemote(t, host+"/a/b:latest", img)
	var pm messages
	if _, err := e.svc.Pull(ctx, host+"/a/b@"+md.String(), "", nil, pm.add); err != nil {
		t.Fatal(err)
	}
	pm.want(t, md.String()+": Pulling from a/b", "Status: Downloaded newer image for "+host+"/a/b@"+md.String())
	list, err := e.svc.ImageList(ctx, false, nil)
	if err != nil || len(list) != 1 || len(list[0].RepoTags) != 0 {
		t.Fatalf("list = %+v, %v", list, err)
	}
	_, err = e.svc.Pull(ctx, host+"/a/nothere", "", nil, nil)
	if !errdefs.IsNotFound(err) {
		t.Fatalf("pull of a missing image: %v, want not found", err)
	}
	if _, err := e.svc.Pull(ctx, "Bad Ref", "", nil, nil); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("bad reference: %v", err)
	}
}

func TestPullMultiArchIndex(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	host := startRegistry(t, nil)
	native, other := randomImage(t, 2), randomImage(t, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}}},
		mutate.IndexAddendum{Add: native, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	r, _ := name.ParseReference(host + "/multi:latest")
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()
	var pm messages
	got, err := e.svc.Pull(ctx, host+"/multi", "", nil, pm.add)
	if err != nil {
		t.Fatal(err)
	}
	if got != mustID(t, native) {
		t.Fatalf("pulled %s, want the linux/%s image %s", got, runtime.GOARCH, mustID(t, native))
	}
	// Docker reports and records the index digest.
	pm.want(t, "Digest: "+idxDigest.String())
	ins, err := e.svc.ImageInspect(ctx, host+"/multi")
	if err != nil || len(ins.RepoDigests) != 1 || ins.RepoDigests[0] != host+"/multi@"+idxDigest.String() {
		t.Fatalf("inspect: %+v %v", ins.RepoDigests, err)
	}
	got, err = e.svc.Pull(ctx, host+"/multi:latest", "linux/s390x", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got != mustID(t, other) {
		t.Fatalf("--platform linux/s390x pulled %s, want %s", got, mustID(t, other))
	}
	if _, err := e.svc.Pull(ctx, host+"/multi:latest", "linux/riscv64", nil, nil); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "no matching manifest for linux/riscv64") {
		t.Fatalf("missing platform: %v", err)
	}
}

// basicAuth guards a handler with HTTP basic authentication, as a registry without a token
// service does.
func basicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

func TestRegistryAuth(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	host := startRegistry(t, basicAuth("alice", "s3cret"))
	good := authn.FromConfig(authn.AuthConfig{Username: "alice", Password: "s3cret"})
	bad := authn.FromConfig(authn.AuthConfig{Username: "alice", Password: "wrong"})
	img := randomImage(t, 1)
	writeRemote(t, host+"/private/img:v1", img, remote.WithAuth(good))

	if _, err := e.svc.Login(ctx, host, good); err != nil {
		t.Fatalf("login with good credentials: %v", err)
	}
	_, err := e.svc.Login(ctx, "http://"+host+"/", bad)
	if !errdefs.IsUnauthorized(err) || !strings.Contains(err.Error(), "login attempt to http://"+host+"/v2/ failed with status: 401") {
		t.Fatalf("login with bad credentials: %v", err)
	}
	for _, a := range []authn.Authenticator{nil, bad} {
		_, err := e.svc.Pull(ctx, host+"/private/img:v1", "", a, nil)
		if !errdefs.IsUnauthorized(err) || !strings.Contains(err.Error(), "pull access denied for "+host+"/private/img") {
			t.Fatalf("pull without valid credentials: %v", err)
		}
	}
	if _, err := e.svc.Pull(ctx, host+"/private/img:v1", "", good, nil); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	if err := e.svc.Push(ctx, host+"/private/img:v1", bad, nil); !errdefs.IsUnauthorized(err) {
		t.Fatalf("push with bad credentials: %v", err)
	}
	if err := e.svc.Push(ctx, host+"/private/img:v1", good, nil); err != nil {
		t.Fatalf("push with credentials: %v", err)
	}
}

// flakyBlobs breaks the connection halfway through GETs of one blob while fail is positive
// (decrementing it each time).
type flakyBlobs struct {
	digest string
	fail   atomic.Int64
	gets   atomic.Int64
}

func (f *flakyBlobs) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+f.digest) {
			h.ServeHTTP(w, r)
			return
		}
		f.gets.Add(1)
		if f.fail.Add(-1) < 0 {
			f.fail.Store(0)
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body[:len(body)/2])
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler) // the client sees the connection die mid-body
	})
}

func TestPullInterruptedLeavesNothingAndRetries(t *testing.T) {
	e := newEnv(t)
	image.SetRetryBase(e.svc, time.Millisecond)
	ctx := context.Background()
	img := randomImage(t, 3)
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	last, _ := ls[2].Digest()
	fb := &flakyBlobs{digest: last.String()}
	host := startRegistry(t, fb.wrap)
	writeRemote(t, host+"/flaky:v1", img)
	ref := host + "/flaky:v1"

	// Every attempt fails: the pull fails and leaves no image, name, blob or snapshot.
	fb.fail.Store(1000)
	var pm messages
	if _, err := e.svc.Pull(ctx, ref, "", nil, pm.add); err == nil {
		t.Fatal("pull through a broken connection succeeded")
	} else if !errdefs.IsUnavailable(err) {
		t.Errorf("error %v is not classified unavailable", err)
	}
	if n := fb.gets.Load(); n < 3 {
		t.Errorf("blob fetched %d times, want 3 attempts", n)
	}
	pm.want(t, "Retrying in")
	list, err := e.svc.ImageList(ctx, true, nil)
	if err != nil || len(list) != 0 {
		t.Fatalf("images after failed pull: %+v %v", list, err)
	}
	if b := e.blobs(t); len(b) != 0 {
		t.Errorf("blobs after failed pull: %v", b)
	}
	if s := e.snap.names(); len(s) != 0 {
		t.Errorf("snapshots after failed pull: %v", s)
	}
	e.ingestEmpty(t)

	// One broken attempt: the pull's own retry completes it.
	fb.fail.Store(1)
	fb.gets.Store(0)
	got, err := e.svc.Pull(ctx, ref, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got != mustID(t, img) || fb.gets.Load() != 2 {
		t.Fatalf("pulled %s after %d blob GETs", got, fb.gets.Load())
	}
}

func TestPushMissingImage(t *testing.T) {
	e := newEnv(t)
	err := e.svc.Push(context.Background(), "127.0.0.1:1/nope", nil, nil)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "An image does not exist locally with the tag: 127.0.0.1:1/nope") {
		t.Fatalf("push of a missing image: %v", err)
	}
}

func TestConcurrentPullsOfOneImage(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	host := startRegistry(t, nil)
	img := randomImage(t, 5)
	writeRemote(t, host+"/same:v1", img)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	ids := make([]string, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = e.svc.Pull(ctx, host+"/same:v1", "", nil, nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil || ids[i] != mustID(t, img) {
			t.Fatalf("pull %d: %s %v", i, ids[i], err)
		}
	}
	list, err := e.svc.ImageList(ctx, false, nil)
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %+v %v", list, err)
	}
	// 5 layers + config + manifest, each stored once.
	if n := len(e.blobs(t)); n != 7 {
		t.Fatalf("%d blobs, want 7", n)
	}
	e.ingestEmpty(t)
}

func TestPullCancelledLeavesNothing(t *testing.T) {
	e := newEnv(t)
	img := randomImage(t, 2)
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	hang := map[string]bool{}
	for _, l := range ls {
		d, _ := l.Digest()
		hang[d.String()] = true
	}
	started := make(chan struct{}, 8)
	// Layer downloads hang until the client goes away; manifest and config are served.
	host := startRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			i := strings.LastIndex(r.URL.Path, "/blobs/")
			if r.Method == http.MethodGet && i >= 0 && hang[r.URL.Path[i+len("/blobs/"):]] {
				started <- struct{}{}
				<-r.Context().Done()
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	writeRemote(t, host+"/hang/img:v1", img)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := e.svc.Pull(ctx, host+"/hang/img:v1", "", nil, nil)
		done <- err
	}()
	select {
	case <-started:
		cancel()
	case err := <-done:
		t.Fatalf("pull finished without fetching a blob: %v", err)
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pull: %v", err)
	}
	list, err := e.svc.ImageList(context.Background(), true, nil)
	if err != nil || len(list) != 0 {
		t.Fatalf("images after cancelled pull: %+v %v", list, err)
	}
	if b := e.blobs(t); len(b) != 0 {
		t.Errorf("blobs after cancelled pull: %v", b)
	}
	if s := e.snap.names(); len(s) != 0 {
		t.Errorf("snapshots after cancelled pull: %v", s)
	}
	e.ingestEmpty(t)
}
