package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/events"
	"github.com/containerd/errdefs"
	eventtypes "github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/system"
)

// fakeImages records calls and answers from canned data.
type fakeImages struct {
	mu    sync.Mutex
	calls []string
	// lastFilters is the filters of the last list/prune call.
	lastFilters Filters
	lastAll     bool
	importBody  string
	importRef   string
	changes     []string
	message     string
}

func (f *fakeImages) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeImages) lastCall() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

func notFound(ref string) error {
	return fmt.Errorf("No such image: %s: %w", ref, errdefs.ErrNotFound)
}

func (f *fakeImages) ImageList(_ context.Context, all bool, filters Filters) ([]image.Summary, error) {
	f.record("list")
	f.lastAll, f.lastFilters = all, filters
	return []image.Summary{{ID: "sha256:aaaa", RepoTags: []string{"busybox:latest"}, Size: 1000}}, nil
}

func (f *fakeImages) ImageInspect(_ context.Context, ref string) (image.InspectResponse, error) {
	f.record("inspect %s", ref)
	switch ref {
	case "panic":
		panic("boom")
	case "conflict":
		return image.InspectResponse{}, fmt.Errorf("in use: %w", errdefs.ErrConflict)
	case "busybox", "localhost:5000/a/b:tag", "sha256:aaaa", "json":
		return image.InspectResponse{ID: "sha256:aaaa", RepoTags: []string{ref}}, nil
	}
	return image.InspectResponse{}, notFound(ref)
}

func (f *fakeImages) ImageHistory(_ context.Context, ref string) ([]image.HistoryResponseItem, error) {
	f.record("history %s", ref)
	return []image.HistoryResponseItem{{ID: "sha256:aaaa", CreatedBy: "import"}}, nil
}

func (f *fakeImages) ImageTag(_ context.Context, source, repo, tag string) error {
	f.record("tag %s %s %s", source, repo, tag)
	return nil
}

func (f *fakeImages) ImageDelete(_ context.Context, ref string, force, noprune bool) ([]image.DeleteResponse, error) {
	f.record("delete %s %v %v", ref, force, noprune)
	if ref == "missing" {
		return nil, notFound(ref)
	}
	return []image.DeleteResponse{{Untagged: ref}}, nil
}

func (f *fakeImages) ImagePrune(_ context.Context, all bool, filters Filters) (image.PruneReport, error) {
	f.record("prune %v", all)
	f.lastAll, f.lastFilters = all, filters
	return image.PruneReport{SpaceReclaimed: 42}, nil
}

func (f *fakeImages) ImageLoad(_ context.Context, r io.Reader, progress Progress) ([]string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	f.record("load %s", b)
	if string(b) == "bad" {
		return nil, fmt.Errorf("not a tarball: %w", errdefs.ErrInvalidArgument)
	}
	if string(b) == "late" {
		progress(jsonstream.Message{ID: "abc", Status: "Loading layer", Progress: &jsonstream.Progress{Current: 1, Total: 2}})
		return nil, errors.New("disk full")
	}
	progress(jsonstream.Message{ID: "abc", Status: "Loading layer", Progress: &jsonstream.Progress{Current: 1, Total: 2}})
	return []string{"Loaded image: busybox:latest"}, nil
}

func (f *fakeImages) ImageSave(_ context.Context, refs []string, w io.Writer) error {
	f.record("save %s", strings.Join(refs, ","))
	for _, r := range refs {
		if r == "missing" {
			return notFound(r)
		}
	}
	_, err := w.Write([]byte("TAR"))
	return err
}

func (f *fakeImages) ImageImport(_ context.Context, src io.Reader, ref string, changes []string, message string, progress Progress) (string, error) {
	b, err := io.ReadAll(src)
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	f.importBody, f.importRef, f.changes, f.message = string(b), ref, changes, message
	f.mu.Unlock()
	f.record("import")
	return "sha256:bbbb", nil
}

type fakeSystem struct{}

func (fakeSystem) Info(context.Context) (system.Info, error) {
	return system.Info{ID: "x", Images: 3, ServerVersion: "test"}, nil
}

func newTestServer(t *testing.T) (*httptest.Server, *fakeImages, *events.Bus) {
	t.Helper()
	fi := &fakeImages{}
	bus := events.New()
	h := New(Config{Images: fi, System: fakeSystem{}, Events: bus, Logger: slog.New(slog.DiscardHandler), Version: "0.1.0"})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, fi, bus
}

func do(t *testing.T, srv *httptest.Server, method, path string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func errMessage(t *testing.T, b []byte) string {
	t.Helper()
	var e errorResponse
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("error body %q: %v", b, err)
	}
	return e.Message
}

func TestPing(t *testing.T) {
	srv, _, _ := newTestServer(t)
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		for _, p := range []string{"/_ping", "/v1.44/_ping", "/v1.51/_ping"} {
			resp, b := do(t, srv, m, p, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("%s %s: %d", m, p, resp.StatusCode)
			}
			if m == http.MethodGet && string(b) != "OK" {
				t.Errorf("body %q", b)
			}
			want := map[string]string{
				"Api-Version": MaxAPIVersion, "Ostype": "linux", "Server": "Berth/0.1.0 (linux)",
				"Builder-Version": "1", "Docker-Experimental": "false",
				"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache",
			}
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s %s: header %s = %q, want %q", m, p, k, got, v)
				}
			}
		}
	}
}

func TestVersionNegotiation(t *testing.T) {
	srv, _, _ := newTestServer(t)
	resp, b := do(t, srv, "GET", "/v1.99/version", nil)
	if resp.StatusCode != 400 || errMessage(t, b) != "client version 1.99 is too new. Maximum supported API version is "+MaxAPIVersion {
		t.Errorf("too new: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, srv, "GET", "/v1.12/version", nil)
	if resp.StatusCode != 400 || errMessage(t, b) != "client version 1.12 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version" {
		t.Errorf("too old: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, srv, "GET", "/v1.24/version", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("1.24: %d %s", resp.StatusCode, b)
	}
	var v system.VersionResponse
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if v.APIVersion != MaxAPIVersion || v.MinAPIVersion != MinAPIVersion || v.Version != "0.1.0" || v.Os != "linux" || len(v.Components) != 1 || v.GoVersion == "" {
		t.Errorf("version: %+v", v)
	}
	if compareVersions("1.9", "1.24") >= 0 || compareVersions("1.100", "1.51") <= 0 || compareVersions("1.44", "1.44") != 0 {
		t.Error("compareVersions is not numeric")
	}
}

func TestInfo(t *testing.T) {
	srv, _, _ := newTestServer(t)
	resp, b := do(t, srv, "GET", "/v1.51/info", nil)
	var info system.Info
	if resp.StatusCode != 200 || json.Unmarshal(b, &info) != nil || info.Images != 3 {
		t.Errorf("info: %d %s", resp.StatusCode, b)
	}
}

func TestRouting(t *testing.T) {
	srv, fi, _ := newTestServer(t)
	cases := []struct {
		method, path string
		status       int
		call         string
	}{
		{"GET", "/images/json", 200, "list"},
		{"GET", "/v1.51/images/json/", 200, "list"},
		{"GET", "/v1.44/images/busybox/json", 200, "inspect busybox"},
		{"GET", "/images/localhost:5000/a/b:tag/json", 200, "inspect localhost:5000/a/b:tag"},
		{"GET", "/images/" + url.PathEscape("localhost:5000/a/b:tag") + "/json", 200, "inspect localhost:5000/a/b:tag"},
		{"GET", "/images/json/json", 200, "inspect json"},
		{"GET", "/images/sha256:aaaa/json", 200, "inspect sha256:aaaa"},
		{"GET", "/images/localhost:5000/a/b:tag/history", 200, "history localhost:5000/a/b:tag"},
		{"POST", "/images/localhost:5000/a/b:tag/tag?repo=localhost:5000/c/d&tag=v1", 201, "tag localhost:5000/a/b:tag localhost:5000/c/d v1"},
		{"POST", "/images/busybox/tag?repo=other:v2", 201, "tag busybox other v2"},
		{"POST", "/images/busybox/tag?repo=docker.io/library/other", 201, "tag busybox other latest"},
		{"DELETE", "/images/localhost:5000/a/b:tag?force=1&noprune=1", 200, "delete localhost:5000/a/b:tag true true"},
		{"DELETE", "/images/busybox", 200, "delete busybox false false"},
		{"GET", "/images/localhost:5000/a/b:tag/get", 200, "save localhost:5000/a/b:tag"},
		{"GET", "/images/get?names=a&names=b:1", 200, "save a,b:1"},
	}
	for _, c := range cases {
		resp, b := do(t, srv, c.method, c.path, nil)
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: status %d, want %d (%s)", c.method, c.path, resp.StatusCode, c.status, b)
			continue
		}
		if got := fi.lastCall(); got != c.call {
			t.Errorf("%s %s: backend call %q, want %q", c.method, c.path, got, c.call)
		}
	}
	for _, p := range []string{"/nope", "/v1.51/containers/json/x", "/images/", "/images//json"} {
		resp, b := do(t, srv, "GET", p, nil)
		if resp.StatusCode != 404 || errMessage(t, b) != "page not found" {
			t.Errorf("%s: %d %s", p, resp.StatusCode, b)
		}
	}
	resp, _ := do(t, srv, "PUT", "/images/json", nil)
	if resp.StatusCode != 404 {
		t.Errorf("PUT /images/json: %d", resp.StatusCode)
	}
}

func TestErrors(t *testing.T) {
	srv, _, _ := newTestServer(t)
	cases := []struct {
		method, path string
		status       int
		msg          string
	}{
		{"GET", "/images/nope/json", 404, "No such image: nope: not found"},
		{"GET", "/images/conflict/json", 409, "in use: conflict"},
		{"GET", "/images/panic/json", 500, "internal server error: boom"},
		{"DELETE", "/images/missing", 404, "No such image: missing: not found"},
		{"GET", "/images/missing/get", 404, "No such image: missing: not found"},
		{"GET", "/images/get", 400, "no image names given (names parameter)"},
		{"GET", "/images/json?filters=notjson", 400, ""},
		{"GET", "/images/json?filters=" + url.QueryEscape(`{"bogus":{"x":true}}`), 400, "invalid filter 'bogus'"},
		{"POST", "/images/busybox/tag", 400, "repository name is required (repo parameter)"},
		{"POST", "/images/busybox/tag?repo=UPPER", 400, ""},
		{"POST", "/images/busybox/tag?repo=busybox@sha256:" + strings.Repeat("a", 64), 400, ""},
		{"POST", "/images/create?fromImage=busybox", 501, ""},
		{"POST", "/images/create?fromSrc=http://example.com/x.tar", 400, ""},
		{"POST", "/images/create", 400, "either fromImage or fromSrc is required"},
		{"POST", "/images/prune?filters=" + url.QueryEscape(`{"dangling":["maybe"]}`), 400, "invalid filter 'dangling=maybe'"},
		{"POST", "/images/load", 400, "not a tarball: invalid argument"},
		{"GET", "/events?since=abc", 400, ""},
		{"GET", "/images/search", 501, ""},
	}
	for _, c := range cases {
		var body io.Reader
		if c.path == "/images/load" {
			body = strings.NewReader("bad")
		}
		resp, b := do(t, srv, c.method, c.path, body)
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: status %d, want %d (%s)", c.method, c.path, resp.StatusCode, c.status, b)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: content type %q", c.method, c.path, ct)
		}
		msg := errMessage(t, b)
		if c.msg != "" && msg != c.msg {
			t.Errorf("%s %s: message %q, want %q", c.method, c.path, msg, c.msg)
		}
		if msg == "" {
			t.Errorf("%s %s: empty message", c.method, c.path)
		}
	}
}

func TestStatusFromError(t *testing.T) {
	cases := map[error]int{
		errdefs.ErrNotFound:           404,
		errdefs.ErrInvalidArgument:    400,
		errdefs.ErrFailedPrecondition: 400,
		errdefs.ErrConflict:           409,
		errdefs.ErrAlreadyExists:      409,
		errdefs.ErrUnauthenticated:    401,
		errdefs.ErrPermissionDenied:   403,
		errdefs.ErrNotImplemented:     501,
		errdefs.ErrUnavailable:        503,
		errors.New("plain"):           500,
	}
	for err, want := range cases {
		if got := statusFromError(fmt.Errorf("wrapped: %w", err)); got != want {
			t.Errorf("%v: %d, want %d", err, got, want)
		}
	}
}

func TestListFilters(t *testing.T) {
	srv, fi, _ := newTestServer(t)
	q := url.Values{"all": {"1"}, "filters": {`{"reference":{"busy*":true,"a":true},"dangling":{"false":true}}`}}
	resp, b := do(t, srv, "GET", "/images/json?"+q.Encode(), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if !fi.lastAll || strings.Join(fi.lastFilters["reference"], ",") != "a,busy*" || fi.lastFilters["dangling"][0] != "false" {
		t.Errorf("all=%v filters=%v", fi.lastAll, fi.lastFilters)
	}
	var list []image.Summary
	if err := json.Unmarshal(b, &list); err != nil || len(list) != 1 {
		t.Errorf("list %s: %v", b, err)
	}
	// Legacy list form.
	q = url.Values{"filters": {`{"label":["a=b","c"]}`}}
	do(t, srv, "GET", "/images/json?"+q.Encode(), nil)
	if fi.lastAll || strings.Join(fi.lastFilters["label"], ",") != "a=b,c" {
		t.Errorf("all=%v filters=%v", fi.lastAll, fi.lastFilters)
	}
	// Prune: dangling=false means all, and is not passed on.
	q = url.Values{"filters": {`{"dangling":{"false":true},"until":{"24h":true}}`}}
	resp, b = do(t, srv, "POST", "/images/prune?"+q.Encode(), nil)
	if resp.StatusCode != 200 || !fi.lastAll || fi.lastFilters["dangling"] != nil || fi.lastFilters["until"][0] != "24h" {
		t.Errorf("prune: %d %s all=%v filters=%v", resp.StatusCode, b, fi.lastAll, fi.lastFilters)
	}
}

func TestDecodeFilters(t *testing.T) {
	for in, want := range map[string]string{
		"":                                 "map[]",
		`{}`:                               "map[]",
		`{"a":{"x":true,"y":false}}`:       "map[a:[x y]]",
		`{"a":["y","x","x"],"b":[]}`:       "map[a:[x y] b:[]]",
		`{"reference":{"busybox:*":true}}`: "map[reference:[busybox:*]]",
	} {
		f, err := DecodeFilters(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got := fmt.Sprint(map[string][]string(f)); got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
	for _, in := range []string{`[]`, `{"a":1}`, `{"a":"x"}`, `nope`} {
		if _, err := DecodeFilters(in); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%q: err %v, want invalid argument", in, err)
		}
	}
}

func FuzzDecodeFilters(f *testing.F) {
	for _, s := range []string{"", `{}`, `{"a":{"x":true}}`, `{"a":["x"]}`, `{"a":null}`, `[1]`, `{"a":{"x":1}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fl, err := DecodeFilters(s)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		_ = validateFilters(fl, imageListFilters...)
	})
}

func FuzzRequest(f *testing.F) {
	for _, s := range []string{
		"GET /images/json?filters=%7B%22a%22%3A1%7D",
		"GET /v1.44/images/a/b:c/json",
		"POST /images/x/tag?repo=a&tag=b",
		"GET /events?since=1.5&until=0.0000000001",
		"GET /v9999999999999999999.1/_ping",
		"POST /images/create?fromSrc=-&repo=a&tag=%00",
		"DELETE /images/%20",
	} {
		f.Add(s)
	}
	fi := &fakeImages{}
	h := New(Config{Images: fi, System: fakeSystem{}, Events: events.New(), Logger: slog.New(slog.DiscardHandler)})
	f.Fuzz(func(t *testing.T, line string) {
		method, target, ok := strings.Cut(line, " ")
		if !ok || method == "" {
			return
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		// /events streams until the client goes away; bound every request.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", strings.NewReader("x"))
		req.Method, req.URL, req.RequestURI = method, u, target
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == 500 {
			t.Fatalf("%s: 500 %s", line, rec.Body)
		}
	})
}

func TestImportStream(t *testing.T) {
	srv, fi, _ := newTestServer(t)
	q := url.Values{"fromSrc": {"-"}, "repo": {"busybox:1.36"}, "changes": {"CMD [\"sh\"]", "ENV A=b"}}
	resp, b := do(t, srv, "POST", "/v1.51/images/create?"+q.Encode(), strings.NewReader("ROOTFS"))
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if fi.importBody != "ROOTFS" || fi.importRef != "busybox:1.36" || len(fi.changes) != 2 || fi.message != "Imported from -" {
		t.Errorf("import got body=%q ref=%q changes=%q message=%q", fi.importBody, fi.importRef, fi.changes, fi.message)
	}
	if strings.TrimSpace(string(b)) != `{"status":"sha256:bbbb"}` {
		t.Errorf("stream %s", b)
	}
	q = url.Values{"fromSrc": {"-"}, "repo": {"localhost:5000/x"}, "tag": {"v1"}, "message": {"hi"}}
	do(t, srv, "POST", "/images/create?"+q.Encode(), strings.NewReader(""))
	if fi.importRef != "localhost:5000/x:v1" || fi.message != "hi" {
		t.Errorf("ref %q message %q", fi.importRef, fi.message)
	}
}

func TestLoadStream(t *testing.T) {
	srv, _, _ := newTestServer(t)
	decode := func(b []byte) []streamMessage {
		var out []streamMessage
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			var m streamMessage
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			out = append(out, m)
		}
		return out
	}
	_, b := do(t, srv, "POST", "/images/load", strings.NewReader("ok"))
	msgs := decode(b)
	if len(msgs) != 1 || msgs[0].Stream != "Loaded image: busybox:latest\n" {
		t.Errorf("quiet load: %s", b)
	}
	_, b = do(t, srv, "POST", "/images/load?quiet=0", strings.NewReader("ok"))
	msgs = decode(b)
	if len(msgs) != 2 || msgs[0].Progress == nil || msgs[1].Stream == "" {
		t.Errorf("load: %s", b)
	}
	// A failure after progress was sent is reported in the stream.
	resp, b := do(t, srv, "POST", "/images/load?quiet=0", strings.NewReader("late"))
	msgs = decode(b)
	if resp.StatusCode != 200 || len(msgs) != 2 || msgs[1].Error == nil || msgs[1].ErrorMessage != "disk full" {
		t.Errorf("late failure: %d %s", resp.StatusCode, b)
	}
}

func TestSave(t *testing.T) {
	srv, _, _ := newTestServer(t)
	resp, b := do(t, srv, "GET", "/images/get?names=busybox", nil)
	if resp.StatusCode != 200 || string(b) != "TAR" || resp.Header.Get("Content-Type") != "application/x-tar" {
		t.Errorf("save: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
}

func readEvents(t *testing.T, r io.Reader, n int) []eventtypes.Message {
	t.Helper()
	dec := json.NewDecoder(r)
	var out []eventtypes.Message
	for len(out) < n {
		var m eventtypes.Message
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("after %d events: %v", len(out), err)
		}
		out = append(out, m)
	}
	return out
}

func TestEventsStream(t *testing.T) {
	srv, _, bus := newTestServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q := url.Values{"filters": {`{"type":{"image":true},"image":{"busybox":true}}`}}
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1.51/events?"+q.Encode(), nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// The response headers arrived, so the subscription exists: events published now are seen.
	bus.Publish(eventtypes.ContainerEventType, "create", "c1", map[string]string{"image": "busybox"})
	bus.Publish(eventtypes.ImageEventType, "tag", "sha256:1", map[string]string{"name": "alpine:latest"})
	bus.Publish(eventtypes.ImageEventType, "tag", "sha256:2", map[string]string{"name": "busybox:latest"})
	got := readEvents(t, resp.Body, 1)
	if got[0].Actor.ID != "sha256:2" || got[0].Action != "tag" {
		t.Errorf("event %+v", got[0])
	}
}

func TestEventsSinceUntil(t *testing.T) {
	srv, _, bus := newTestServer(t)
	ts := func(t time.Time) string { return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond()) }
	start := time.Now().Add(-time.Second)
	bus.Publish(eventtypes.ImageEventType, "import", "sha256:1", map[string]string{"name": "a:latest"})
	bus.Publish(eventtypes.ImageEventType, "untag", "sha256:1", map[string]string{"name": "a:latest"})
	// until in the past: the stream replays the matching history and ends.
	q := url.Values{"since": {ts(start)}, "until": {ts(time.Now())}, "filters": {`{"event":["import"]}`}}
	resp, b := do(t, srv, "GET", "/events?"+q.Encode(), nil)
	if resp.StatusCode != 200 || strings.Count(string(b), "\n") != 1 || !strings.Contains(string(b), `"import"`) {
		t.Errorf("since/until replay: %d %s", resp.StatusCode, b)
	}
	// Without since nothing is replayed.
	resp, b = do(t, srv, "GET", "/events?until="+ts(time.Now()), nil)
	if resp.StatusCode != 200 || len(b) != 0 {
		t.Errorf("no since: %d %s", resp.StatusCode, b)
	}
	q.Set("until", "1")
	resp, b = do(t, srv, "GET", "/events?"+q.Encode(), nil)
	if resp.StatusCode != 400 {
		t.Errorf("until before since: %d %s", resp.StatusCode, b)
	}
}

func TestParseTimestamp(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1.5": 1_500_000_000, "10.000000001": 10_000_000_001, "-1": -1_000_000_000} {
		got, err := parseTimestamp(in)
		if err != nil || got.UnixNano() != want {
			t.Errorf("%q: %v %v", in, got.UnixNano(), err)
		}
	}
	for _, in := range []string{"x", "1.", "1.1234567890", "1.-1", "99999999999999999999"} {
		if _, err := parseTimestamp(in); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestMatchEvent(t *testing.T) {
	img := eventtypes.Message{Type: "image", Action: "tag", Actor: eventtypes.Actor{ID: "sha256:abc", Attributes: map[string]string{"name": "busybox:latest", "l": "v"}}}
	ctr := eventtypes.Message{Type: "container", Action: "exec_start: sh", Actor: eventtypes.Actor{ID: "0123456789abcdef", Attributes: map[string]string{"name": "web", "image": "busybox"}}}
	cases := []struct {
		f    Filters
		m    eventtypes.Message
		want bool
	}{
		{Filters{}, img, true},
		{Filters{"type": {"image"}}, img, true},
		{Filters{"type": {"container"}}, img, false},
		{Filters{"image": {"busybox"}}, img, true},
		{Filters{"image": {"busybox:latest"}}, img, true},
		{Filters{"image": {"sha256:abc"}}, img, true},
		{Filters{"image": {"alpine"}}, img, false},
		{Filters{"image": {"busybox"}}, ctr, true},
		{Filters{"label": {"l"}}, img, true},
		{Filters{"label": {"l=v"}}, img, true},
		{Filters{"label": {"l=w"}}, img, false},
		{Filters{"event": {"exec_start"}}, ctr, true},
		{Filters{"container": {"web"}}, ctr, true},
		{Filters{"container": {"0123456789ab"}}, ctr, true},
		{Filters{"container": {"web"}}, img, false},
		{Filters{"type": {"image"}, "event": {"untag"}}, img, false},
		{Filters{"network": {"x"}}, img, false},
	}
	for i, c := range cases {
		if got := matchEvent(c.f, c.m); got != c.want {
			t.Errorf("case %d %v: %v, want %v", i, c.f, got, c.want)
		}
	}
}
