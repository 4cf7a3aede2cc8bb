package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestVersionAndInfo(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)

	out := d.mustBerth(t, nil, "version")
	for _, want := range []string{"Client:", "Server: Berth Engine", "API version:", "(minimum version 1.24)"} {
		if !strings.Contains(out, want) {
			t.Errorf("berth version lacks %q:\n%s", want, out)
		}
	}
	out = d.mustBerth(t, nil, "info")
	if !strings.Contains(out, "Server Version:") || !strings.Contains(out, "Images: 0") {
		t.Errorf("berth info:\n%s", out)
	}
	if out := d.mustBerth(t, nil, "system", "info", "--format", "{{.OSType}}"); out != "linux\n" {
		t.Errorf("berth system info --format: %q", out)
	}

	out = d.mustDocker(t, nil, "version", "--format", "{{.Server.Platform.Name}}|{{.Server.APIVersion}}|{{.Server.MinAPIVersion}}|{{.Server.Os}}")
	if parts := strings.Split(strings.TrimSpace(out), "|"); len(parts) != 4 || parts[0] != "Berth Engine" || parts[2] != "1.24" || parts[3] != "linux" {
		t.Errorf("docker version: %q", out)
	}
	d.mustDocker(t, nil, "version")
	out = d.mustDocker(t, nil, "info", "--format", "{{.Images}} {{.OSType}}")
	if out != "0 linux\n" {
		t.Errorf("docker info --format: %q", out)
	}
	d.mustDocker(t, nil, "info")

	// The API rejects versions it does not speak with dockerd's messages.
	resp, err := d.httpClient().Get("http://berth/v1.99/version")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "client version 1.99 is too new") {
		t.Errorf("/v1.99/version: %d %s", resp.StatusCode, body)
	}
}

func TestImageLifecycle(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	id := d.importBusybox(t, "busybox:latest", "-c", `CMD ["sh"]`, "-m", "test import")

	out := d.mustBerth(t, nil, "images")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "REPOSITORY   TAG       IMAGE ID       CREATED") ||
		!strings.HasPrefix(lines[1], "busybox      latest    "+strings.TrimPrefix(id, "sha256:")[:12]) {
		t.Errorf("berth images:\n%s", out)
	}
	if out := d.mustBerth(t, nil, "images", "-q", "--no-trunc"); out != id+"\n" {
		t.Errorf("berth images -q --no-trunc: %q", out)
	}

	// The docker CLI sees the same image, and its JSON format works.
	out = d.mustDocker(t, nil, "images", "--format", "{{json .}}")
	var row map[string]string
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &row); err != nil {
		t.Fatalf("docker images --format '{{json .}}': %v\n%s", err, out)
	}
	if row["Repository"] != "busybox" || row["Tag"] != "latest" || !strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), row["ID"]) {
		t.Errorf("docker images json: %v", row)
	}

	// Tags with registries and ports, through both CLIs.
	d.mustBerth(t, nil, "tag", "busybox", "localhost:5000/team/busybox:v1")
	d.mustDocker(t, nil, "tag", "localhost:5000/team/busybox:v1", "other:v2")
	for _, ref := range []string{"busybox", "localhost:5000/team/busybox:v1", "other:v2", strings.TrimPrefix(id, "sha256:")[:12], id} {
		if got := d.inspect(t, ref).ID; got != id {
			t.Errorf("inspect %s: ID %s, want %s", ref, got, id)
		}
		if got := strings.TrimSpace(d.mustDocker(t, nil, "image", "inspect", "--format", "{{.Id}}", ref)); got != id {
			t.Errorf("docker image inspect %s: %s, want %s", ref, got, id)
		}
	}
	out = d.mustDocker(t, nil, "images", "--format", "{{.Repository}}:{{.Tag}}")
	for _, want := range []string{"busybox:latest", "localhost:5000/team/busybox:v1", "other:v2"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("docker images lacks %s:\n%s", want, out)
		}
	}
	info := d.inspect(t, "busybox")
	if len(info.RootFS.Layers) != 1 {
		t.Errorf("imported image has layers %v, want one", info.RootFS.Layers)
	}
	if cmd := strings.TrimSpace(d.mustBerth(t, nil, "inspect", "-f", "{{json .Config.Cmd}}", "busybox")); cmd != `["sh"]` {
		t.Errorf("Config.Cmd = %s", cmd)
	}

	// History.
	out = d.mustBerth(t, nil, "history", "busybox")
	if !strings.HasPrefix(out, "IMAGE") || !strings.Contains(out, "test import") {
		t.Errorf("berth history:\n%s", out)
	}
	out = d.mustDocker(t, nil, "history", "--no-trunc", "--format", "{{.ID}} {{.Comment}}", "busybox")
	if !strings.Contains(out, "test import") {
		t.Errorf("docker history:\n%s", out)
	}

	// Unknown images: exit 1 and "No such image" from both CLIs.
	for _, args := range [][]string{{"image", "inspect", "nope"}, {"rmi", "nope"}, {"history", "nope"}, {"tag", "nope", "x"}, {"save", "-o", filepath.Join(t.TempDir(), "x.tar"), "nope"}} {
		if r := d.berth(t, nil, args...); r.code != 1 || !strings.Contains(r.stderr, "No such image") {
			t.Errorf("berth %v: %s", args, r)
		}
		if r := d.docker(t, nil, args...); r.code != 1 || !strings.Contains(r.stderr, "No such image") {
			t.Errorf("docker %v: %s", args, r)
		}
	}

	// Removal: untag one name, then the image.
	out = d.mustDocker(t, nil, "rmi", "other:v2")
	if !strings.Contains(out, "Untagged: other:v2") {
		t.Errorf("docker rmi other:v2: %s", out)
	}
	d.mustBerth(t, nil, "rmi", "localhost:5000/team/busybox:v1")
	out = d.mustBerth(t, nil, "rmi", "busybox")
	if !strings.Contains(out, "Untagged: busybox:latest") || !strings.Contains(out, "Deleted: "+id) {
		t.Errorf("berth rmi busybox: %s", out)
	}
	if out := d.mustBerth(t, nil, "images", "-q"); out != "" {
		t.Errorf("images after rmi: %q", out)
	}
}

func TestImagePrune(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	first := d.importBusybox(t, "busybox:latest")
	second := d.importBusybox(t, "busybox:latest", "-c", `CMD ["sh"]`)
	if first == second {
		t.Fatal("the two imports produced the same image")
	}
	// The first image lost its name: it is dangling.
	out := d.mustBerth(t, nil, "images", "-f", "dangling=true", "-q", "--no-trunc")
	if out != first+"\n" {
		t.Errorf("dangling images: %q, want %s", out, first)
	}
	out = d.mustBerth(t, nil, "image", "prune", "-f")
	if !strings.Contains(out, "deleted: "+first) || !strings.Contains(out, "Total reclaimed space:") {
		t.Errorf("berth image prune -f:\n%s", out)
	}
	if r := d.berth(t, nil, "image", "inspect", first); r.code != 1 {
		t.Errorf("pruned image still there: %s", r)
	}
	// Nothing dangling left: docker's prune deletes nothing; -a removes the unused named image.
	out = d.mustDocker(t, nil, "image", "prune", "-f")
	if strings.Contains(out, "deleted:") {
		t.Errorf("docker image prune -f deleted something:\n%s", out)
	}
	out = d.mustDocker(t, nil, "image", "prune", "-a", "-f")
	if !strings.Contains(out, "deleted: "+second) {
		t.Errorf("docker image prune -a -f:\n%s", out)
	}
	if out := d.mustBerth(t, nil, "images", "-a", "-q"); out != "" {
		t.Errorf("images after prune -a: %q", out)
	}
}

// snapshot records every image's ID and layers by name.
func snapshot(t *testing.T, d *daemon, names ...string) map[string]imageInfo {
	t.Helper()
	m := map[string]imageInfo{}
	for _, n := range names {
		m[n] = d.inspect(t, n)
	}
	return m
}

func sameImages(t *testing.T, what string, before, after map[string]imageInfo) {
	t.Helper()
	for n, b := range before {
		a, ok := after[n]
		if !ok {
			t.Errorf("%s: %s is missing", what, n)
			continue
		}
		if a.ID != b.ID || !slices.Equal(a.RootFS.Layers, b.RootFS.Layers) {
			t.Errorf("%s: %s changed: ID %s -> %s, layers %v -> %v", what, n, b.ID, a.ID, b.RootFS.Layers, a.RootFS.Layers)
		}
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	d.importBusybox(t, "busybox:latest")
	d.importBusybox(t, "localhost:5000/app/shell:v1", "-c", `ENTRYPOINT ["/bin/sh"]`, "-c", "ENV FOO=bar")
	d.mustBerth(t, nil, "tag", "busybox:latest", "busybox:extra")
	names := []string{"busybox:latest", "busybox:extra", "localhost:5000/app/shell:v1"}
	before := snapshot(t, d, names...)

	dir := t.TempDir()
	archive := filepath.Join(dir, "images.tar")
	d.mustBerth(t, nil, append([]string{"save", "-o", archive}, names...)...)
	for _, n := range names {
		d.mustBerth(t, nil, "rmi", n)
	}
	if out := d.mustBerth(t, nil, "images", "-a", "-q"); out != "" {
		t.Fatalf("images left after rmi: %q", out)
	}
	out := d.mustBerth(t, nil, "load", "-i", archive)
	for _, n := range names {
		if !strings.Contains(out, "Loaded image: "+n) {
			t.Errorf("berth load output lacks %s:\n%s", n, out)
		}
	}
	sameImages(t, "berth save | berth load", before, snapshot(t, d, names...))

	// The same round trip through the docker CLI, streamed over stdin/stdout.
	saved := d.mustDocker(t, nil, append([]string{"save"}, names...)...)
	for _, n := range names {
		d.mustDocker(t, nil, "rmi", n)
	}
	out = d.mustDocker(t, strings.NewReader(saved), "load")
	if !strings.Contains(out, "Loaded image: busybox:latest") {
		t.Errorf("docker load output:\n%s", out)
	}
	sameImages(t, "docker save | docker load", before, snapshot(t, d, names...))

	// A tarball saved by berth loads through docker, and per-image GET /images/{name}/get works.
	d.mustDocker(t, nil, "rmi", "localhost:5000/app/shell:v1")
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d.mustDocker(t, f, "load", "-q")
	sameImages(t, "berth save | docker load", before, snapshot(t, d, names...))
	resp, err := d.httpClient().Get("http://berth/v1.44/images/localhost:5000/app/shell:v1/get")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-tar" || n == 0 {
		t.Errorf("GET /images/{name}/get: %d %s, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), n)
	}

	// Without -o, save streams to stdout when it is not a terminal.
	if r := d.berth(t, nil, "save", "busybox"); r.code != 0 || len(r.stdout) == 0 {
		t.Errorf("berth save to a pipe: exit %d, %d bytes", r.code, len(r.stdout))
	}
}

func TestSecondDaemonRefused(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	other := t.TempDir()
	cmd := exec.Command(berthBin, "daemon", "--root", d.root, "--exec-root", other, "-H", "unix://"+filepath.Join(other, "berth.sock"))
	r := runCmd(t, cmd, nil)
	if r.code == 0 || !strings.Contains(r.stderr, "already using data root") {
		t.Errorf("second daemon on the same root: %s", r)
	}
	// The first daemon is unaffected.
	d.mustBerth(t, nil, "images")
}

// bigArchive writes a docker-archive tarball of a random multi-layer image to path.
func bigArchive(t *testing.T, path, ref string, layers int64, layerSize int64) {
	t.Helper()
	img, err := random.Image(layerSize, layers)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config = v1.Config{Cmd: []string{"sh"}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		t.Fatal(err)
	}
}

func TestKillDuringLoad(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	archive := filepath.Join(t.TempDir(), "big.tar")
	bigArchive(t, archive, "big:latest", 6, 8<<20)
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}

	t.Logf("archive: %d MB", len(data)>>20)
	// Send half of the archive, then kill the daemon while it is reading the rest.
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, "http://berth/v1.51/images/load?quiet=0", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-tar")
	respc := make(chan error, 1)
	go func() {
		resp, err := d.httpClient().Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		respc <- err
	}()
	if _, err := pw.Write(data[:len(data)/2]); err != nil {
		t.Fatalf("sending the first half: %v", err)
	}
	d.kill()
	_ = pw.CloseWithError(io.ErrUnexpectedEOF)
	<-respc // the request fails one way or another; what matters is the state after restart

	d.start(t)
	if out := d.mustBerth(t, nil, "images", "-a", "-q"); out != "" {
		t.Errorf("a killed load left images behind: %q", out)
	}
	out := d.mustBerth(t, nil, "load", "-i", archive)
	if !strings.Contains(out, "Loaded image: big:latest") {
		t.Errorf("load after restart:\n%s", out)
	}
	info := d.inspect(t, "big:latest")
	if len(info.RootFS.Layers) != 6 {
		t.Errorf("loaded image has %d layers, want 6", len(info.RootFS.Layers))
	}
	// The archive's own view of the image agrees with the daemon's.
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != cfgName.String() {
		t.Errorf("image ID %s, want the config digest %s", info.ID, cfgName)
	}
	if out := d.mustBerth(t, nil, "images", "--format", "{{.Repository}}:{{.Tag}}"); out != "big:latest\n" {
		t.Errorf("images: %q", out)
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	start := time.Now().Add(-time.Second)
	id := d.importBusybox(t, "busybox:latest")
	d.mustBerth(t, nil, "tag", "busybox", "again:v1")
	// --until in the past: the replay ends by itself.
	until := strconv.FormatInt(time.Now().Unix()+1, 10)
	since := strconv.FormatInt(start.Unix(), 10)
	waitPast(t, until)
	out := d.mustBerth(t, nil, "events", "--since", since, "--until", until, "--filter", "type=image")
	if !strings.Contains(out, " image tag "+id) || !strings.Contains(out, "name=again:v1") {
		t.Errorf("berth events:\n%s", out)
	}
	out = d.mustBerth(t, nil, "events", "--since", since, "--until", until, "--filter", "event=tag", "--format", "{{.Action}} {{.Actor.Attributes.name}}")
	if !strings.Contains(out, "tag again:v1\n") {
		t.Errorf("berth events --format:\n%s", out)
	}
	out = d.mustDocker(t, nil, "events", "--since", since, "--until", until, "--filter", "image=again:v1", "--format", "{{json .}}")
	if !strings.Contains(out, `"Action":"tag"`) {
		t.Errorf("docker events:\n%s", out)
	}
}

// waitPast sleeps until the Unix time ts (seconds) has passed, so that an --until of ts is
// in the past and the event stream ends by itself.
func waitPast(t *testing.T, ts string) {
	t.Helper()
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(time.Unix(sec, 0)); d > 0 {
		time.Sleep(d + 10*time.Millisecond)
	}
}
