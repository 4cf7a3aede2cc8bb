package e2e

import (
	"bufio"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"golang.org/x/crypto/bcrypt"
)

// startRegistry serves go-containerregistry's in-memory registry on 127.0.0.1, optionally
// behind HTTP basic authentication, and returns "localhost:PORT".
func startRegistry(t *testing.T, user, pass string) string {
	t.Helper()
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var handler http.Handler = h
	if user != "" {
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="e2e"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return strings.Replace(strings.TrimPrefix(srv.URL, "http://"), "127.0.0.1", "localhost", 1)
}

// startBerthRegistry runs `berth registry serve` on a free loopback port with its own root,
// optionally with basic authentication (an htpasswd file with a bcrypt entry, as `htpasswd -B`
// writes), and returns "localhost:PORT". The server is stopped at the end of the test.
func startBerthRegistry(t *testing.T, user, pass string) string {
	t.Helper()
	dir := t.TempDir()
	args := []string{"registry", "serve", "--addr", "127.0.0.1:0", "--root", filepath.Join(dir, "root")}
	if user != "" {
		h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		hp := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(hp, []byte(user+":"+string(h)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--htpasswd", hp)
	}
	cmd := exec.Command(berthBin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if _, rest, ok := strings.Cut(line, " addr="); ok && !sent && strings.Contains(line, `msg="registry listening"`) {
				addrc <- strings.Fields(rest)[0]
				sent = true
			}
		}
		if !sent {
			close(addrc)
		}
	}()
	select {
	case addr, ok := <-addrc:
		if !ok {
			t.Fatal("berth registry serve exited without listening")
		}
		return strings.Replace(addr, "127.0.0.1", "localhost", 1)
	case <-time.After(30 * time.Second):
		t.Fatal("berth registry serve did not report its address")
	}
	return ""
}

// registries are the registries the push/pull tests run against: go-containerregistry's, and
// berth's own.
var registries = []struct {
	name  string
	start func(t *testing.T, user, pass string) string
}{{"ggcr", startRegistry}, {"berth", startBerthRegistry}}

// TestDockerPushPull: the real docker CLI pushes an image to a registry through berth, removes
// it and pulls it back with the same ID and digest, against go-containerregistry's registry and
// against `berth registry serve`.
func TestDockerPushPull(t *testing.T) {
	for _, r := range registries {
		t.Run(r.name, func(t *testing.T) { testDockerPushPull(t, r.start) })
	}
}

func testDockerPushPull(t *testing.T, startReg func(t *testing.T, user, pass string) string) {
	d := startDaemon(t)
	id := d.importBusybox(t, "bbx:v1")
	reg := startReg(t, "", "")
	ref := reg + "/e2e/bbx:v1"
	d.mustDocker(t, nil, "tag", "bbx:v1", ref)
	out := d.mustDocker(t, nil, "push", ref)
	for _, s := range []string{"The push refers to repository [" + reg + "/e2e/bbx]", "v1: digest: sha256:"} {
		if !strings.Contains(out, s) {
			t.Fatalf("docker push output lacks %q:\n%s", s, out)
		}
	}
	digest := out[strings.Index(out, "digest: ")+len("digest: "):]
	digest = digest[:strings.IndexByte(digest, ' ')]
	d.mustDocker(t, nil, "rmi", ref, "bbx:v1")
	out = d.mustDocker(t, nil, "pull", ref)
	for _, s := range []string{"v1: Pulling from e2e/bbx", "Pull complete", "Digest: " + digest, "Status: Downloaded newer image for " + ref} {
		if !strings.Contains(out, s) {
			t.Fatalf("docker pull output lacks %q:\n%s", s, out)
		}
	}
	if got := d.inspect(t, ref).ID; got != id {
		t.Fatalf("pulled image ID %s, pushed %s", got, id)
	}
	out = d.mustDocker(t, nil, "image", "inspect", "--format", "{{json .RepoDigests}}", ref)
	if !strings.Contains(out, reg+"/e2e/bbx@"+digest) {
		t.Fatalf("RepoDigests = %s, want %s@%s", out, reg+"/e2e/bbx", digest)
	}
	out = d.mustDocker(t, nil, "pull", ref)
	if !strings.Contains(out, "Image is up to date for "+ref) {
		t.Fatalf("second pull:\n%s", out)
	}
	if r := d.docker(t, nil, "pull", reg+"/e2e/missing:v1"); r.code == 0 || !strings.Contains(r.stderr, "manifest unknown") {
		t.Fatalf("pull of a missing image: %s", r)
	}
}

// TestBerthLoginPushPull: berth login stores credentials that push and pull then send; a
// wrong password is refused with a clear message; logout forgets them.
func TestBerthLoginPushPull(t *testing.T) {
	d := startDaemon(t)
	d.importBusybox(t, "bbx:v1")
	reg := startRegistry(t, "alice", "s3cret")
	ref := reg + "/private/bbx:v1"
	d.mustBerth(t, nil, "tag", "bbx:v1", ref)
	cfg := t.TempDir()
	berth := func(stdin io.Reader, args ...string) result {
		t.Helper()
		cmd := exec.Command(berthBin, append([]string{"-H", d.host}, args...)...)
		cmd.Env = append(cmd.Environ(), "DOCKER_CONFIG="+cfg)
		return runCmd(t, cmd, stdin)
	}
	if r := berth(nil, "push", ref); r.code == 0 || !strings.Contains(r.stdout+r.stderr, "authentication required") {
		t.Fatalf("push without login: %s", r)
	}
	if r := berth(strings.NewReader("wrong\n"), "login", "-u", "alice", "--password-stdin", reg); r.code == 0 || !strings.Contains(r.stderr, "401 Unauthorized") {
		t.Fatalf("login with a wrong password: %s", r)
	}
	if r := berth(strings.NewReader("s3cret\n"), "login", "-u", "alice", "--password-stdin", reg); r.code != 0 || !strings.Contains(r.stdout, "Login Succeeded") {
		t.Fatalf("login: %s", r)
	}
	if r := berth(nil, "push", ref); r.code != 0 || !strings.Contains(r.stdout, "Pushed") {
		t.Fatalf("push after login: %s", r)
	}
	d.mustBerth(t, nil, "rmi", ref)
	if r := berth(nil, "pull", "-q", ref); r.code != 0 || strings.TrimSpace(r.stdout) != ref {
		t.Fatalf("pull -q after login: %s", r)
	}
	if r := berth(nil, "logout", reg); r.code != 0 || !strings.Contains(r.stdout, "Removing login credentials for "+reg) {
		t.Fatalf("logout: %s", r)
	}
	d.mustBerth(t, nil, "rmi", ref)
	if r := berth(nil, "pull", ref); r.code == 0 || !strings.Contains(r.stderr, "pull access denied") {
		t.Fatalf("pull after logout: %s", r)
	}
}

// TestDockerLogin: the real docker CLI logs in through berth's /auth and pushes with the
// credentials it stored, to both registries.
func TestDockerLogin(t *testing.T) {
	for _, r := range registries {
		t.Run(r.name, func(t *testing.T) { testDockerLogin(t, r.start) })
	}
}

func testDockerLogin(t *testing.T, startReg func(t *testing.T, user, pass string) string) {
	d := startDaemon(t)
	d.importBusybox(t, "bbx:v1")
	reg := startReg(t, "alice", "s3cret")
	ref := reg + "/private/bbx:v1"
	d.mustDocker(t, nil, "tag", "bbx:v1", ref)
	if r := d.docker(t, strings.NewReader("wrong\n"), "login", "-u", "alice", "--password-stdin", reg); r.code == 0 || !strings.Contains(r.stderr, "401 Unauthorized") {
		t.Fatalf("docker login with a wrong password: %s", r)
	}
	cfg := dockerConfig(t)
	login := exec.Command("docker", "login", "-u", "alice", "--password-stdin", reg)
	login.Env = append(os.Environ(), "DOCKER_HOST="+d.host, "DOCKER_CONFIG="+cfg, "DOCKER_CONTEXT=", "DOCKER_CLI_HINTS=false")
	if r := runCmd(t, login, strings.NewReader("s3cret\n")); r.code != 0 || !strings.Contains(r.stdout, "Login Succeeded") {
		t.Fatalf("docker login: %s", r)
	}
	push := exec.Command("docker", "push", ref)
	push.Env = login.Env
	if r := runCmd(t, push, nil); r.code != 0 || !strings.Contains(r.stdout, "v1: digest: sha256:") {
		t.Fatalf("docker push after login: %s", r)
	}
}

// TestDockerAllTagsAndMount: `docker push --all-tags` pushes every local tag of a repository,
// `docker pull --all-tags` pulls every tag back, and pushing the same image to a second
// repository of `berth registry serve` mounts its layers ("Mounted from").
func TestDockerAllTagsAndMount(t *testing.T) {
	d := startDaemon(t)
	id := d.importBusybox(t, "bbx:v1")
	reg := startBerthRegistry(t, "", "")
	repo := reg + "/e2e/multi"
	for _, tag := range []string{"a", "b"} {
		d.mustDocker(t, nil, "tag", "bbx:v1", repo+":"+tag)
	}
	out := d.mustDocker(t, nil, "push", "--all-tags", repo)
	for _, s := range []string{"The push refers to repository [" + repo + "]", "a: digest: sha256:", "b: digest: sha256:"} {
		if !strings.Contains(out, s) {
			t.Fatalf("docker push --all-tags output lacks %q:\n%s", s, out)
		}
	}
	d.mustDocker(t, nil, "tag", "bbx:v1", reg+"/e2e/other:v1")
	out = d.mustDocker(t, nil, "push", reg+"/e2e/other:v1")
	if !strings.Contains(out, "Mounted from e2e/multi") {
		t.Fatalf("second repository did not mount the layer:\n%s", out)
	}
	d.mustDocker(t, nil, "rmi", "-f", id)
	out = d.mustDocker(t, nil, "pull", "--all-tags", repo)
	for _, s := range []string{"a: Pulling from e2e/multi", "b: Pulling from e2e/multi", "Status: Downloaded newer image for " + repo} {
		if !strings.Contains(out, s) {
			t.Fatalf("docker pull --all-tags output lacks %q:\n%s", s, out)
		}
	}
	for _, tag := range []string{"a", "b"} {
		if got := d.inspect(t, repo+":"+tag).ID; got != id {
			t.Fatalf("%s:%s is %s, want %s", repo, tag, got, id)
		}
	}
	if r := d.docker(t, nil, "pull", "--all-tags", repo+":a"); r.code == 0 || !strings.Contains(r.stderr, "tag can't be used with --all-tags") {
		t.Fatalf("pull --all-tags with a tag: %s", r)
	}
}

// TestDockerLoadPushPullKeepsDigests: an image from `docker save` | `docker load`, pushed,
// removed and pulled back keeps its ID, and RepoDigests names the manifest as pushed.
func TestDockerLoadPushPullKeepsDigests(t *testing.T) {
	d := startDaemon(t)
	id := d.importBusybox(t, "bbx:v1")
	archive := filepath.Join(t.TempDir(), "bbx.tar")
	d.mustDocker(t, nil, "save", "-o", archive, "bbx:v1")
	d.mustDocker(t, nil, "rmi", "bbx:v1")
	d.mustDocker(t, nil, "load", "-i", archive)
	if got := d.inspect(t, "bbx:v1").ID; got != id {
		t.Fatalf("loaded %s, saved %s", got, id)
	}
	reg := startBerthRegistry(t, "", "")
	ref := reg + "/e2e/loaded:v1"
	d.mustDocker(t, nil, "tag", "bbx:v1", ref)
	out := d.mustDocker(t, nil, "push", ref)
	digest := out[strings.Index(out, "digest: ")+len("digest: "):]
	digest = digest[:strings.IndexByte(digest, ' ')]
	want := `["` + reg + "/e2e/loaded@" + digest + `"]`
	if got := strings.TrimSpace(d.mustDocker(t, nil, "image", "inspect", "--format", "{{json .RepoDigests}}", ref)); got != want {
		t.Fatalf("RepoDigests after push = %s, want %s", got, want)
	}
	d.mustDocker(t, nil, "rmi", "-f", id)
	out = d.mustDocker(t, nil, "pull", ref)
	if !strings.Contains(out, "Digest: "+digest) {
		t.Fatalf("pull back got another digest (want %s):\n%s", digest, out)
	}
	if got := d.inspect(t, ref).ID; got != id {
		t.Fatalf("pulled back %s, loaded %s", got, id)
	}
	if got := strings.TrimSpace(d.mustDocker(t, nil, "image", "inspect", "--format", "{{json .RepoDigests}}", ref)); got != want {
		t.Fatalf("RepoDigests after pull = %s, want %s", got, want)
	}
}
