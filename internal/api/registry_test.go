package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/registry"
)

// fakeRegistry records what the handlers ask of the registry backend.
type fakeRegistry struct {
	ref, platform, user string
	failEarly, failLate error
}

func userOf(t *testing.T, a authn.Authenticator) string {
	t.Helper()
	c, err := a.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	return c.Username
}

func (f *fakeRegistry) Pull(_ context.Context, ref, platform string, auth authn.Authenticator, progress Progress) (string, error) {
	f.ref, f.platform = ref, platform
	if c, err := auth.Authorization(); err == nil {
		f.user = c.Username
	}
	if f.failEarly != nil {
		return "", f.failEarly
	}
	progress(jsonstream.Message{ID: "latest", Status: "Pulling from library/busybox"})
	if f.failLate != nil {
		return "", f.failLate
	}
	progress(jsonstream.Message{Status: "Status: Downloaded newer image for busybox:latest"})
	return "sha256:abc", nil
}

func (f *fakeRegistry) Push(_ context.Context, ref string, auth authn.Authenticator, progress Progress) error {
	f.ref = ref
	if c, err := auth.Authorization(); err == nil {
		f.user = c.Username
	}
	progress(jsonstream.Message{Status: "The push refers to repository [docker.io/library/busybox]"})
	return f.failLate
}

func (f *fakeRegistry) Login(_ context.Context, server string, auth authn.Authenticator) (string, error) {
	f.ref = server
	c, _ := auth.Authorization()
	if c.Password != "right" {
		return "", fmt.Errorf("login attempt to https://%s/v2/ failed with status: 401 Unauthorized: %w", server, errdefs.ErrUnauthenticated)
	}
	return server, nil
}

func authHeader(t *testing.T, ac registry.AuthConfig) string {
	t.Helper()
	b, err := json.Marshal(ac)
	if err != nil {
		t.Fatal(err)
	}
	return base64.URLEncoding.EncodeToString(b)
}

func newRegistryServer(t *testing.T) (*httptest.Server, *fakeRegistry) {
	t.Helper()
	fr := &fakeRegistry{}
	srv := httptest.NewServer(New(Config{Images: &fakeImages{}, Registry: fr, Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)
	return srv, fr
}

func post(t *testing.T, srv *httptest.Server, path, auth, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set(registry.AuthHeader, auth)
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
	return resp, string(b)
}

func TestPullEndpoint(t *testing.T) {
	srv, fr := newRegistryServer(t)
	auth := authHeader(t, registry.AuthConfig{Username: "bob", Password: "pw"})
	resp, body := post(t, srv, "/v1.47/images/create?fromImage=busybox&tag=latest&platform=linux/arm64", auth, "")
	if resp.StatusCode != 200 || !strings.Contains(body, "Pulling from library/busybox") || !strings.Contains(body, "Downloaded newer image") {
		t.Fatalf("pull: %d %s", resp.StatusCode, body)
	}
	if fr.ref != "busybox:latest" || fr.platform != "linux/arm64" || fr.user != "bob" {
		t.Fatalf("backend got %+v", fr)
	}
	// A digest in tag pulls by digest.
	dg := "sha256:" + strings.Repeat("a", 64)
	if resp, _ := post(t, srv, "/images/create?fromImage=example.com/x/y&tag="+dg, "", ""); resp.StatusCode != 200 || fr.ref != "example.com/x/y@"+dg || fr.user != "" {
		t.Fatalf("pull by digest: %d %+v", resp.StatusCode, fr)
	}
	// Errors before any progress are HTTP errors, afterwards in-stream errors.
	fr.failEarly = fmt.Errorf("pull access denied for nope: %w", errdefs.ErrUnauthenticated)
	if resp, body := post(t, srv, "/images/create?fromImage=nope", "", ""); resp.StatusCode != 401 || !strings.Contains(body, "pull access denied") {
		t.Fatalf("early failure: %d %s", resp.StatusCode, body)
	}
	fr.failEarly, fr.failLate = nil, fmt.Errorf("download layer: connection reset")
	resp, body = post(t, srv, "/images/create?fromImage=busybox", "", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"errorDetail":{"message":"download layer: connection reset"}`) {
		t.Fatalf("late failure: %d %s", resp.StatusCode, body)
	}
	if resp, _ := post(t, srv, "/images/create?fromImage=busybox", "!!!notbase64", ""); resp.StatusCode != 400 {
		t.Fatalf("bad auth header: %d", resp.StatusCode)
	}
	if resp, _ := post(t, srv, "/images/create?fromImage=Bad%20Name&tag=x", "", ""); resp.StatusCode != 400 {
		t.Fatalf("bad name: %d", resp.StatusCode)
	}
}

func TestPushAndAuthEndpoints(t *testing.T) {
	srv, fr := newRegistryServer(t)
	auth := authHeader(t, registry.AuthConfig{Username: "bob", Password: "pw"})
	resp, body := post(t, srv, "/images/localhost:5000/a/b/push?tag=v1", auth, "")
	if resp.StatusCode != 200 || !strings.Contains(body, "The push refers to repository") || fr.ref != "localhost:5000/a/b:v1" || fr.user != "bob" {
		t.Fatalf("push: %d %s %+v", resp.StatusCode, body, fr)
	}
	resp, body = post(t, srv, "/auth", "", `{"username":"bob","password":"right","serveraddress":"reg.example"}`)
	if resp.StatusCode != 200 || !strings.Contains(body, `"Status":"Login Succeeded"`) || fr.ref != "reg.example" {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	resp, body = post(t, srv, "/auth", "", `{"username":"bob","password":"wrong","serveraddress":"reg.example"}`)
	if resp.StatusCode != 401 || !strings.Contains(body, "failed with status: 401 Unauthorized") {
		t.Fatalf("bad login: %d %s", resp.StatusCode, body)
	}
	if resp, _ := post(t, srv, "/auth", "", `{`); resp.StatusCode != 400 {
		t.Fatalf("bad body: %d", resp.StatusCode)
	}
}

func TestRegistryNotAvailable(t *testing.T) {
	srv, _, _ := newTestServer(t)
	for _, p := range []string{"/images/create?fromImage=busybox", "/images/busybox/push", "/auth"} {
		if resp, _ := post(t, srv, p, "", "{}"); resp.StatusCode != 501 {
			t.Errorf("%s: %d, want 501", p, resp.StatusCode)
		}
	}
}

func TestDecodeAuthHeader(t *testing.T) {
	want := registry.AuthConfig{Username: "u", Password: "p?>", ServerAddress: "s"}
	b, _ := json.Marshal(want)
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.RawURLEncoding, base64.StdEncoding} {
		got, err := decodeAuthHeader(enc.EncodeToString(b))
		if err != nil || got != want {
			t.Fatalf("decode: %+v %v", got, err)
		}
	}
	for _, h := range []string{"", "e30=", "bnVsbA=="} { // "", "{}", "null"
		if got, err := decodeAuthHeader(h); err != nil || got != (registry.AuthConfig{}) {
			t.Fatalf("decode %q: %+v %v", h, got, err)
		}
	}
	if userOf(t, authenticator(registry.AuthConfig{})) != "" {
		t.Fatal("empty credentials are not anonymous")
	}
}

func FuzzDecodeAuthHeader(f *testing.F) {
	for _, s := range []string{"", "e30=", "eyJ1c2VybmFtZSI6InUifQ", "!!", "bnVsbA==", "W10="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		ac, err := decodeAuthHeader(h)
		if err == nil {
			_ = authenticator(ac)
		}
		_, _ = pullReference(h, "latest")
		_, _ = pullReference("busybox", h)
	})
}

// An empty tag means all tags, as in dockerd: the docker CLI sends no tag only for --all-tags.
func TestAllTagsReachBackendAsBareRepository(t *testing.T) {
	srv, fr := newRegistryServer(t)
	if resp, body := post(t, srv, "/images/create?fromImage=busybox", "", ""); resp.StatusCode != 200 || fr.ref != "busybox" {
		t.Fatalf("pull --all-tags: %d %s, backend got %q", resp.StatusCode, body, fr.ref)
	}
	if resp, _ := post(t, srv, "/images/create?fromImage=busybox:1.36", "", ""); resp.StatusCode != 200 || fr.ref != "busybox:1.36" {
		t.Fatalf("pull with the tag in fromImage: backend got %q", fr.ref)
	}
	if resp, body := post(t, srv, "/images/localhost:5000/a/b/push", "", ""); resp.StatusCode != 200 || fr.ref != "localhost:5000/a/b" {
		t.Fatalf("push --all-tags: %d %s, backend got %q", resp.StatusCode, body, fr.ref)
	}
}
