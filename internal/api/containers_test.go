package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/events"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// fakeContainers is a ContainerBackend over canned containers: "web" (no TTY), "tty" (TTY),
// "stopped" (kill conflicts) and "broken" (attach fails after the upgrade); any other name is
// not found.
type fakeContainers struct {
	mu    sync.Mutex
	calls []string

	created     container.CreateRequest
	createdName string
	listFilters Filters
	listArgs    string
	logOpts     LogsOptions
	extracted   string
	extractOpts ArchiveOptions
	execReq     container.ExecCreateRequest
	execOpts    ExecStartOptions
	waitCond    container.WaitCondition
	// waitCh is what ContainerWait returns; tests send the result when they choose.
	waitCh chan container.WaitResponse
}

func newFakeContainers() *fakeContainers {
	return &fakeContainers{waitCh: make(chan container.WaitResponse, 1)}
}

func (f *fakeContainers) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeContainers) lastCall() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

func noSuchContainer(id string) error {
	return fmt.Errorf("No such container: %s: %w", id, errdefs.ErrNotFound)
}

func (f *fakeContainers) known(id string) (tty bool, err error) {
	switch id {
	case "web", "stopped", "broken":
		return false, nil
	case "tty":
		return true, nil
	}
	return false, noSuchContainer(id)
}

// frame is one stdcopy frame.
func frame(stream byte, s string) []byte {
	hdr := make([]byte, 8, 8+len(s))
	hdr[0] = stream
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(s)))
	return append(hdr, s...)
}

func (f *fakeContainers) ContainerCreate(_ context.Context, name string, cfg *container.Config, hc *container.HostConfig, nc *network.NetworkingConfig) (container.CreateResponse, error) {
	f.record("create %s %s", name, cfg.Image)
	if hc == nil {
		return container.CreateResponse{}, errors.New("host config must never be nil")
	}
	if cfg.Image != "busybox" {
		return container.CreateResponse{}, fmt.Errorf("No such image: %s: %w", cfg.Image, errdefs.ErrNotFound)
	}
	f.mu.Lock()
	f.created = container.CreateRequest{Config: cfg, HostConfig: hc, NetworkingConfig: nc}
	f.createdName = name
	f.mu.Unlock()
	return container.CreateResponse{ID: "0123456789abcdef"}, nil
}

func (f *fakeContainers) ContainerStart(_ context.Context, id string) error {
	f.record("start %s", id)
	_, err := f.known(id)
	return err
}

func fmtTimeout(t *int) string {
	if t == nil {
		return "nil"
	}
	return fmt.Sprint(*t)
}

func (f *fakeContainers) ContainerStop(_ context.Context, id, signal string, timeout *int) error {
	f.record("stop %s %q %s", id, signal, fmtTimeout(timeout))
	_, err := f.known(id)
	return err
}

func (f *fakeContainers) ContainerRestart(_ context.Context, id, signal string, timeout *int) error {
	f.record("restart %s %q %s", id, signal, fmtTimeout(timeout))
	_, err := f.known(id)
	return err
}

func (f *fakeContainers) ContainerKill(_ context.Context, id, signal string) error {
	f.record("kill %s %q", id, signal)
	if id == "stopped" {
		return fmt.Errorf("container %s is not running: %w", id, errdefs.ErrConflict)
	}
	_, err := f.known(id)
	return err
}

func (f *fakeContainers) ContainerPause(_ context.Context, id string) error {
	f.record("pause %s", id)
	_, err := f.known(id)
	return err
}

func (f *fakeContainers) ContainerUnpause(_ context.Context, id string) error {
	f.record("unpause %s", id)
	_, err := f.known(id)
	return err
}

func (f *fakeContainers) ContainerWait(_ context.Context, id string, cond container.WaitCondition) (<-chan container.WaitResponse, error) {
	f.record("wait %s %s", id, cond)
	if _, err := f.known(id); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.waitCond = cond
	f.mu.Unlock()
	return f.waitCh, nil
}

func (f *fakeContainers) ContainerRemove(_ context.Context, id string, force, removeVolumes bool) error {
	f.record("rm %s %v %v", id, force, removeVolumes)
	if id == "web" && !force {
		return fmt.Errorf("cannot remove container %q: container is running: %w", id, errdefs.ErrConflict)
	}
	_, err := f.known(id)
	return err
}

func (f *fakeContainers) ContainerList(_ context.Context, all bool, limit int, size bool, filters Filters) ([]container.Summary, error) {
	f.record("list")
	f.mu.Lock()
	f.listFilters, f.listArgs = filters, fmt.Sprintf("all=%v limit=%d size=%v", all, limit, size)
	f.mu.Unlock()
	if len(filters["name"]) > 0 && filters["name"][0] == "none" {
		return nil, nil
	}
	return []container.Summary{{ID: "0123456789abcdef", Names: []string{"/web"}, Image: "busybox", State: container.StateRunning}}, nil
}

func (f *fakeContainers) ContainerInspect(_ context.Context, id string, size bool) (container.InspectResponse, error) {
	f.record("inspect %s %v", id, size)
	tty, err := f.known(id)
	if err != nil {
		return container.InspectResponse{}, err
	}
	return container.InspectResponse{ID: "0123456789abcdef", Name: "/" + id, Config: &container.Config{Tty: tty, Image: "busybox"},
		State: &container.State{Status: container.StateRunning, Running: true}}, nil
}

// ContainerAttach greets, echoes stdin back once it ends, then half-closes, as a container that
// runs `echo hello; cat` would.
func (f *fakeContainers) ContainerAttach(_ context.Context, id string, opts AttachOptions, upgrade Upgrade) error {
	f.record("attach %s stdin=%v stdout=%v stderr=%v stream=%v logs=%v keys=%q", id, opts.Stdin, opts.Stdout, opts.Stderr, opts.Stream, opts.Logs, opts.DetachKeys)
	tty, err := f.known(id)
	if err != nil {
		return err
	}
	if id == "stopped" {
		return fmt.Errorf("You cannot attach to a stopped container, start it first: %w", errdefs.ErrConflict)
	}
	stream, err := upgrade()
	if err != nil {
		return err
	}
	defer stream.Close()
	if id == "broken" {
		return errors.New("shim went away")
	}
	return echo(stream, tty, opts.Stdin)
}

func echo(stream RawStream, tty, stdin bool) error {
	out := func(s string) []byte {
		if tty {
			return []byte(s)
		}
		return frame(1, s)
	}
	if _, err := stream.Write(out("hello\n")); err != nil {
		return err
	}
	if stdin {
		in, err := io.ReadAll(stream)
		if err != nil {
			return err
		}
		if _, err := stream.Write(out("got:" + string(in))); err != nil {
			return err
		}
		if !tty {
			if _, err := stream.Write(frame(2, "warn\n")); err != nil {
				return err
			}
		}
	}
	return stream.CloseWrite()
}

func (f *fakeContainers) ContainerLogs(_ context.Context, id string, opts LogsOptions) (io.ReadCloser, bool, error) {
	f.record("logs %s", id)
	tty, err := f.known(id)
	if err != nil {
		return nil, false, err
	}
	f.mu.Lock()
	f.logOpts = opts
	f.mu.Unlock()
	if tty {
		return io.NopCloser(strings.NewReader("line1\r\nline2\r\n")), true, nil
	}
	if id == "broken" {
		return io.NopCloser(io.MultiReader(bytes.NewReader(frame(1, "line1\n")), iotestErrReader{errors.New("log file vanished")})), false, nil
	}
	return io.NopCloser(bytes.NewReader(append(frame(1, "line1\n"), frame(2, "oops\n")...))), false, nil
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

func (f *fakeContainers) ContainerResize(_ context.Context, id string, height, width uint16) error {
	f.record("resize %s %d %d", id, height, width)
	_, err := f.known(id)
	return err
}

func (f *fakeContainers) ContainerTop(_ context.Context, id, psArgs string) (container.TopResponse, error) {
	f.record("top %s %q", id, psArgs)
	if _, err := f.known(id); err != nil {
		return container.TopResponse{}, err
	}
	return container.TopResponse{Titles: []string{"PID", "CMD"}, Processes: [][]string{{"1", "sh"}}}, nil
}

// ContainerStats emits three samples when streaming (then stops as if ctx ended), one otherwise.
func (f *fakeContainers) ContainerStats(_ context.Context, id string, stream bool, emit func(container.StatsResponse) error) error {
	f.record("stats %s %v", id, stream)
	if _, err := f.known(id); err != nil {
		return err
	}
	n := 1
	if stream {
		n = 3
	}
	for i := range n {
		if err := emit(container.StatsResponse{ID: "0123456789abcdef", Name: "/" + id, PidsStats: container.PidsStats{Current: uint64(i + 1)}}); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeContainers) ContainerRename(_ context.Context, id, newName string) error {
	f.record("rename %s %s", id, newName)
	_, err := f.known(id)
	return err
}

func (f *fakeContainers) ContainerUpdate(_ context.Context, id string, u container.UpdateConfig) (container.UpdateResponse, error) {
	f.record("update %s %d", id, u.Memory)
	if _, err := f.known(id); err != nil {
		return container.UpdateResponse{}, err
	}
	return container.UpdateResponse{}, nil
}

func (f *fakeContainers) ContainerChanges(_ context.Context, id string) ([]container.FilesystemChange, error) {
	f.record("changes %s", id)
	if _, err := f.known(id); err != nil {
		return nil, err
	}
	if id == "tty" {
		return nil, nil
	}
	return []container.FilesystemChange{{Path: "/tmp/x", Kind: container.ChangeAdd}}, nil
}

func (f *fakeContainers) ContainerExport(_ context.Context, id string, w io.Writer) error {
	f.record("export %s", id)
	if _, err := f.known(id); err != nil {
		return err
	}
	_, err := w.Write([]byte("ROOTFS-TAR"))
	return err
}

var testPathStat = container.PathStat{Name: "passwd", Size: 42, Mode: 0o644, Mtime: time.Unix(1700000000, 0).UTC()}

func (f *fakeContainers) ContainerStatPath(_ context.Context, id, p string) (container.PathStat, error) {
	f.record("stat %s %s", id, p)
	if _, err := f.known(id); err != nil {
		return container.PathStat{}, err
	}
	if p != "/etc/passwd" {
		return container.PathStat{}, fmt.Errorf("Could not find the file %s in container %s: %w", p, id, errdefs.ErrNotFound)
	}
	return testPathStat, nil
}

func (f *fakeContainers) ContainerArchive(ctx context.Context, id, p string) (io.ReadCloser, container.PathStat, error) {
	st, err := f.ContainerStatPath(ctx, id, p)
	if err != nil {
		return nil, st, err
	}
	return io.NopCloser(strings.NewReader("PATH-TAR")), st, nil
}

func (f *fakeContainers) ContainerExtract(_ context.Context, id, p string, opts ArchiveOptions, r io.Reader) error {
	f.record("extract %s %s", id, p)
	if _, err := f.known(id); err != nil {
		return err
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.extracted, f.extractOpts = string(b), opts
	f.mu.Unlock()
	return nil
}

func (f *fakeContainers) ContainersPrune(_ context.Context, filters Filters) (container.PruneReport, error) {
	f.record("prune %v", map[string][]string(filters))
	return container.PruneReport{}, nil
}

// Exec IDs: "exec-web" (no TTY) and "exec-tty" (TTY at create).
func (f *fakeContainers) ExecCreate(_ context.Context, id string, req container.ExecCreateRequest) (string, error) {
	f.record("exec-create %s %s", id, strings.Join(req.Cmd, " "))
	if _, err := f.known(id); err != nil {
		return "", err
	}
	f.mu.Lock()
	f.execReq = req
	f.mu.Unlock()
	if req.Tty {
		return "exec-tty", nil
	}
	return "exec-web", nil
}

func noSuchExec(id string) error {
	return fmt.Errorf("No such exec instance: %s: %w", id, errdefs.ErrNotFound)
}

func (f *fakeContainers) ExecStart(_ context.Context, execID string, opts ExecStartOptions, upgrade Upgrade) error {
	f.record("exec-start %s detach=%v tty=%v", execID, opts.Detach, opts.Tty)
	if execID != "exec-web" && execID != "exec-tty" {
		return noSuchExec(execID)
	}
	f.mu.Lock()
	f.execOpts = opts
	f.mu.Unlock()
	if opts.Detach {
		return nil
	}
	stream, err := upgrade()
	if err != nil {
		return err
	}
	defer stream.Close()
	return echo(stream, execID == "exec-tty" || opts.Tty, true)
}

func (f *fakeContainers) ExecInspect(_ context.Context, execID string) (container.ExecInspectResponse, error) {
	f.record("exec-inspect %s", execID)
	if execID != "exec-web" && execID != "exec-tty" {
		return container.ExecInspectResponse{}, noSuchExec(execID)
	}
	code := 0
	return container.ExecInspectResponse{ID: execID, ContainerID: "0123456789abcdef", ExitCode: &code, Pid: 42,
		ProcessConfig: &container.ExecProcessConfig{Tty: execID == "exec-tty", Entrypoint: "sh"}}, nil
}

func (f *fakeContainers) ExecResize(_ context.Context, execID string, height, width uint16) error {
	f.record("exec-resize %s %d %d", execID, height, width)
	if execID != "exec-web" && execID != "exec-tty" {
		return noSuchExec(execID)
	}
	return nil
}

var _ ContainerBackend = (*fakeContainers)(nil)

func newContainerServer(t *testing.T) (*httptest.Server, *fakeContainers) {
	t.Helper()
	fc := newFakeContainers()
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv := httptest.NewServer(New(Config{Images: &fakeImages{}, Containers: fc, Events: events.New(), Logger: log, Version: "0.1.0"}))
	t.Cleanup(srv.Close)
	return srv, fc
}

// newClient is the Docker client, as the docker CLI and berth's CLI use it, on srv.
func newClient(t *testing.T, srv *httptest.Server) *client.Client {
	t.Helper()
	cl, err := client.New(client.WithHost("tcp://"+srv.Listener.Addr().String()), client.WithAPIVersion(MaxAPIVersion))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// testCtx bounds a test's client calls, so that a server that never answers fails the test
// instead of hanging it; nothing is asserted about time.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestContainerCreate(t *testing.T) {
	srv, fc := newContainerServer(t)
	body := `{"Image":"busybox","Cmd":["sh"],"Tty":true,"HostConfig":{"Memory":1048576},"NetworkingConfig":{"EndpointsConfig":{"bridge":{}}}}`
	resp, b := do(t, srv, "POST", "/v1.51/containers/create?name=web", strings.NewReader(body))
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, b)
	}
	if strings.TrimSpace(string(b)) != `{"Id":"0123456789abcdef","Warnings":[]}` {
		t.Errorf("create body %s", b)
	}
	if fc.createdName != "web" || fc.created.Config.Image != "busybox" || !fc.created.Config.Tty || fc.created.HostConfig.Memory != 1<<20 ||
		fc.created.NetworkingConfig == nil || len(fc.created.NetworkingConfig.EndpointsConfig) != 1 {
		t.Errorf("backend got name %q %+v", fc.createdName, fc.created)
	}
	// Without HostConfig the backend still gets one.
	if resp, b := do(t, srv, "POST", "/containers/create", strings.NewReader(`{"Image":"busybox"}`)); resp.StatusCode != 201 {
		t.Errorf("no host config: %d %s", resp.StatusCode, b)
	}

	cases := []struct {
		path, body string
		status     int
		msg        string
	}{
		{"/containers/create", `{"Image":`, 400, "invalid JSON: unexpected EOF"},
		{"/containers/create", ``, 400, "invalid JSON: got EOF while reading request body"},
		{"/containers/create", `null`, 400, "config cannot be empty in order to create a container"},
		{"/containers/create", `{"Image":"busybox"} {}`, 400, "invalid JSON: unexpected content after JSON"},
		{"/containers/create", `{"Image":1}`, 400, ""},
		{"/containers/create", `{"Image":"missing"}`, 404, "No such image: missing: not found"},
		{"/containers/create?platform=windows/amd64", `{"Image":"busybox"}`, 400, ""},
		{"/containers/create?platform=linux//x", `{"Image":"busybox"}`, 400, ""},
	}
	for _, c := range cases {
		resp, b := do(t, srv, "POST", c.path, strings.NewReader(c.body))
		if resp.StatusCode != c.status {
			t.Errorf("%s %q: status %d, want %d (%s)", c.path, c.body, resp.StatusCode, c.status, b)
			continue
		}
		msg := errMessage(t, b)
		if (c.msg != "" && msg != c.msg) || msg == "" {
			t.Errorf("%s %q: message %q, want %q", c.path, c.body, msg, c.msg)
		}
	}
	if resp, b := do(t, srv, "POST", "/containers/create?platform=linux/amd64", strings.NewReader(`{"Image":"busybox"}`)); resp.StatusCode != 201 {
		t.Errorf("platform linux/amd64: %d %s", resp.StatusCode, b)
	}

	// The Docker client: "No such image" must arrive as a not-found error with dockerd's text,
	// which is what makes the docker CLI say "Unable to find image" (and pull).
	cl := newClient(t, srv)
	ctx := testCtx(t)
	_, err := cl.ContainerCreate(ctx, client.ContainerCreateOptions{Image: "missing"})
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "No such image: missing") {
		t.Errorf("client create of a missing image: %v", err)
	}
	res, err := cl.ContainerCreate(ctx, client.ContainerCreateOptions{Image: "busybox", Name: "c1", HostConfig: &container.HostConfig{CapAdd: []string{"net_admin"}}})
	if err != nil || res.ID != "0123456789abcdef" || res.Warnings == nil {
		t.Errorf("client create: %+v %v", res, err)
	}
	if fc.createdName != "c1" || !slices.Equal(fc.created.HostConfig.CapAdd, []string{"CAP_NET_ADMIN"}) {
		t.Errorf("client create reached the backend as %q %+v", fc.createdName, fc.created.HostConfig)
	}
}

func TestContainerActions(t *testing.T) {
	srv, fc := newContainerServer(t)
	cases := []struct {
		method, path string
		body         string
		status       int
		call         string
	}{
		{"POST", "/v1.51/containers/web/start", "", 204, "start web"},
		{"POST", "/containers/web/start", "{}", 204, "start web"},
		{"POST", "/containers/web/stop", "", 204, `stop web "" nil`},
		{"POST", "/containers/web/stop?t=5&signal=SIGINT", "", 204, `stop web "SIGINT" 5`},
		{"POST", "/containers/web/stop?t=-1", "", 204, `stop web "" -1`},
		{"POST", "/containers/web/restart?t=0", "", 204, `restart web "" 0`},
		{"POST", "/containers/web/kill", "", 204, `kill web ""`},
		{"POST", "/containers/web/kill?signal=HUP", "", 204, `kill web "HUP"`},
		{"POST", "/containers/web/pause", "", 204, "pause web"},
		{"POST", "/containers/web/unpause", "", 204, "unpause web"},
		{"POST", "/containers/web/rename?name=new", "", 204, "rename web new"},
		{"POST", "/containers/web/resize?h=24&w=80", "", 200, "resize web 24 80"},
		{"DELETE", "/containers/web?force=1&v=1", "", 204, "rm web true true"},
		{"DELETE", "/containers/tty", "", 204, "rm tty false false"},
		{"POST", "/containers/web/update", `{"Memory":1024}`, 200, "update web 1024"},
		{"GET", "/containers/web/json?size=1", "", 200, "inspect web true"},
		{"GET", "/containers/json/json", "", 404, "inspect json false"},
		{"GET", "/containers/web/top?ps_args=aux", "", 200, `top web "aux"`},
		{"GET", "/containers/web/changes", "", 200, "changes web"},
		{"POST", "/containers/prune?filters=" + url.QueryEscape(`{"until":{"24h":true},"label!":{"a":true}}`), "", 200, "prune map[label!:[a] until:[24h]]"},
		{"POST", "/exec/exec-web/resize?h=10&w=20", "", 200, "exec-resize exec-web 10 20"},
	}
	for _, c := range cases {
		resp, b := do(t, srv, c.method, c.path, strings.NewReader(c.body))
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: status %d, want %d (%s)", c.method, c.path, resp.StatusCode, c.status, b)
			continue
		}
		if got := fc.lastCall(); got != c.call {
			t.Errorf("%s %s: backend call %q, want %q", c.method, c.path, got, c.call)
		}
	}

	errCases := []struct {
		method, path string
		body         string
		status       int
		msg          string
	}{
		{"POST", "/containers/nope/start", "", 404, "No such container: nope: not found"},
		{"POST", "/containers/web/start", `{"Binds":["/a:/b"]}`, 400, ""},
		{"POST", "/containers/web/start?checkpoint=c1", "", 501, ""},
		{"POST", "/containers/web/stop?t=soon", "", 400, ""},
		{"POST", "/containers/nope/stop", "", 404, ""},
		{"POST", "/containers/stopped/kill", "", 409, "container stopped is not running: conflict"},
		{"POST", "/containers/web/rename", "", 400, ""},
		{"POST", "/containers/web/resize?h=24", "", 400, ""},
		{"POST", "/containers/web/resize?h=-1&w=80", "", 400, ""},
		{"POST", "/containers/web/resize?h=70000&w=80", "", 400, ""},
		{"DELETE", "/containers/web", "", 409, ""},
		{"DELETE", "/containers/nope", "", 404, ""},
		{"DELETE", "/containers/web?link=1", "", 501, ""},
		{"POST", "/containers/web/update", `{"Memory":"x"}`, 400, ""},
		{"POST", "/containers/web/wait?condition=bogus", "", 400, ""},
		{"POST", "/containers/nope/wait", "", 404, ""},
		{"POST", "/containers/nope/attach?stream=1", "", 404, ""},
		{"GET", "/containers/nope/logs?stdout=1", "", 404, ""},
		{"GET", "/containers/web/logs", "", 400, "Bad parameters: you must choose at least one stream"},
		{"GET", "/containers/web/logs?stdout=1&since=yesterday", "", 400, ""},
		{"GET", "/containers/web/stats?stream=1&one-shot=1", "", 400, "cannot have stream=true and one-shot=true"},
		{"GET", "/containers/nope/stats", "", 404, ""},
		{"GET", "/containers/nope/export", "", 404, ""},
		{"GET", "/containers/web/archive", "", 400, ""},
		{"GET", "/containers/web/archive?path=/nope", "", 404, "Could not find the file /nope in container web: not found"},
		{"PUT", "/containers/nope/archive?path=/", "", 404, ""},
		{"GET", "/containers/json?filters=" + url.QueryEscape(`{"bogus":["x"]}`), "", 400, "invalid filter 'bogus'"},
		{"GET", "/containers/json?limit=many", "", 400, ""},
		{"POST", "/containers/prune?filters=" + url.QueryEscape(`{"status":["exited"]}`), "", 400, "invalid filter 'status'"},
		{"POST", "/containers/web/exec", `{"Cmd":[]}`, 400, "No exec command specified"},
		{"POST", "/containers/web/exec", `{"Cmd":["sh"],"ConsoleSize":[24,80]}`, 400, "console size is only supported when TTY is enabled"},
		{"POST", "/containers/web/exec", `{"Cmd":`, 400, ""},
		{"POST", "/containers/nope/exec", `{"Cmd":["sh"]}`, 404, ""},
		{"POST", "/exec/nope/start", `{"Detach":true}`, 404, ""},
		{"POST", "/exec/nope/start", `{}`, 404, "No such exec instance: nope: not found"},
		{"POST", "/exec/exec-web/start", `{"Tty":false,"ConsoleSize":[1,2]}`, 400, ""},
		{"POST", "/exec/exec-web/start", `[`, 400, ""},
		{"GET", "/exec/nope/json", "", 404, ""},
		{"POST", "/exec/exec-web/resize", "", 400, ""},
		{"GET", "/containers/web/attach/ws", "", 501, ""},
	}
	for _, c := range errCases {
		resp, b := do(t, srv, c.method, c.path, strings.NewReader(c.body))
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: status %d, want %d (%s)", c.method, c.path, resp.StatusCode, c.status, b)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: content type %q", c.method, c.path, ct)
		}
		msg := errMessage(t, b)
		if (c.msg != "" && msg != c.msg) || msg == "" {
			t.Errorf("%s %s: message %q, want %q", c.method, c.path, msg, c.msg)
		}
	}

	// Without a container backend the endpoints exist but are not implemented.
	bare := httptest.NewServer(New(Config{}))
	defer bare.Close()
	if resp, b := do(t, bare, "GET", "/containers/json", nil); resp.StatusCode != 501 {
		t.Errorf("no backend: %d %s", resp.StatusCode, b)
	}
}

func TestContainerListAndInspect(t *testing.T) {
	srv, fc := newContainerServer(t)
	q := url.Values{"all": {"1"}, "limit": {"3"}, "size": {"true"},
		"filters": {`{"label":{"a=b":true,"c":true},"status":{"exited":true}}`}}
	resp, b := do(t, srv, "GET", "/containers/json?"+q.Encode(), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("list: %d %s", resp.StatusCode, b)
	}
	if fc.listArgs != "all=true limit=3 size=true" || strings.Join(fc.listFilters["label"], ",") != "a=b,c" || fc.listFilters["status"][0] != "exited" {
		t.Errorf("list got %s %v", fc.listArgs, fc.listFilters)
	}
	// Legacy list form, and an empty result is [] not null.
	q = url.Values{"filters": {`{"name":["none"]}`}}
	resp, b = do(t, srv, "GET", "/containers/json?"+q.Encode(), nil)
	if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != "[]" || fc.listArgs != "all=false limit=0 size=false" {
		t.Errorf("empty list: %d %s %s", resp.StatusCode, b, fc.listArgs)
	}

	cl := newClient(t, srv)
	ctx := testCtx(t)
	list, err := cl.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("ancestor", "busybox").Add("name", "web")})
	if err != nil || len(list.Items) != 1 || list.Items[0].Names[0] != "/web" {
		t.Fatalf("client list: %+v %v", list, err)
	}
	if fc.listFilters["ancestor"][0] != "busybox" || fc.listFilters["name"][0] != "web" {
		t.Errorf("client list filters %v", fc.listFilters)
	}
	insp, err := cl.ContainerInspect(ctx, "tty", client.ContainerInspectOptions{})
	if err != nil || insp.Container.Name != "/tty" || !insp.Container.Config.Tty {
		t.Errorf("client inspect: %+v %v", insp.Container, err)
	}
	if _, err := cl.ContainerInspect(ctx, "nope", client.ContainerInspectOptions{}); !errdefs.IsNotFound(err) {
		t.Errorf("client inspect of a missing container: %v", err)
	}
	if _, err := cl.ContainerKill(ctx, "stopped", client.ContainerKillOptions{}); !errdefs.IsConflict(err) {
		t.Errorf("client kill of a stopped container: %v", err)
	}
	timeout := 3
	if _, err := cl.ContainerStop(ctx, "web", client.ContainerStopOptions{Timeout: &timeout, Signal: "SIGUSR1"}); err != nil || fc.lastCall() != `stop web "SIGUSR1" 3` {
		t.Errorf("client stop: %v, backend %s", err, fc.lastCall())
	}
	if _, err := cl.ContainerRemove(ctx, "web", client.ContainerRemoveOptions{Force: true}); err != nil || fc.lastCall() != "rm web true false" {
		t.Errorf("client rm: %v, backend %s", err, fc.lastCall())
	}
	if _, err := cl.ContainerRemove(ctx, "web", client.ContainerRemoveOptions{}); !errdefs.IsConflict(err) {
		t.Errorf("client rm of a running container: %v", err)
	}

	// Changes: a nil list is [].
	_, b = do(t, srv, "GET", "/containers/tty/changes", nil)
	if strings.TrimSpace(string(b)) != "[]" {
		t.Errorf("empty changes: %s", b)
	}
	resp, b = do(t, srv, "GET", "/containers/web/export", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-tar" || string(b) != "ROOTFS-TAR" {
		t.Errorf("export: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
}

// TestContainerWaitFlushesHeaders: the client must see 200 and the headers while the container
// still runs (the docker CLI calls wait before start), and the result only when it exits.
func TestContainerWaitFlushesHeaders(t *testing.T) {
	srv, fc := newContainerServer(t)
	ctx := testCtx(t)
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1.51/containers/web/wait?condition=next-exit", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Do returned with the headers, and nothing was sent on the wait channel yet.
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("wait: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if fc.waitCond != container.WaitConditionNextExit {
		t.Errorf("condition %q", fc.waitCond)
	}
	fc.waitCh <- container.WaitResponse{StatusCode: 3}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(b)) != `{"StatusCode":3,"Error":null}` {
		t.Errorf("wait body %s", b)
	}

	// The Docker client: ContainerWait returns (after the headers) before the result exists.
	cl := newClient(t, srv)
	wr := cl.ContainerWait(ctx, "web", client.ContainerWaitOptions{})
	select {
	case err := <-wr.Error:
		t.Fatalf("client wait: %v", err)
	default:
	}
	if fc.lastCall() != "wait web not-running" {
		t.Errorf("backend call %q", fc.lastCall())
	}
	fc.waitCh <- container.WaitResponse{StatusCode: 137, Error: &container.WaitExitError{Message: "killed"}}
	select {
	case res := <-wr.Result:
		if res.StatusCode != 137 || res.Error == nil || res.Error.Message != "killed" {
			t.Errorf("client wait result %+v", res)
		}
	case err := <-wr.Error:
		t.Fatalf("client wait: %v", err)
	}
	wr = cl.ContainerWait(ctx, "nope", client.ContainerWaitOptions{})
	if err := <-wr.Error; !errdefs.IsNotFound(err) {
		t.Errorf("client wait on a missing container: %v", err)
	}
}

// rawRequest writes an HTTP request on a fresh connection and returns the connection and its
// reader, positioned after the response headers.
func rawRequest(t *testing.T, srv *httptest.Server, req string) (*net.TCPConn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn), br, resp
}

func demux(t *testing.T, r io.Reader) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	_, err = stdcopy.StdCopy(&o, &e, r)
	return o.String(), e.String(), err
}

func TestContainerAttachHijack(t *testing.T) {
	srv, fc := newContainerServer(t)
	// Stdin sent right behind the request, before the 101 arrives, lands in the server's read
	// buffer; it must reach the backend first.
	c, br, resp := rawRequest(t, srv, "POST /v1.51/containers/web/attach?stream=1&stdin=1&stdout=1&stderr=1&detachKeys=ctrl-x HTTP/1.1\r\n"+
		"Host: berth\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: text/plain\r\n\r\nearly-")
	if resp.StatusCode != 101 || resp.Status != "101 UPGRADED" {
		t.Fatalf("status %q", resp.Status)
	}
	for k, v := range map[string]string{"Content-Type": mediaTypeMultiplexedStream, "Connection": "Upgrade", "Upgrade": "tcp", "Api-Version": MaxAPIVersion} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	// The greeting arrives before stdin ends: the stream is live, not buffered to the end.
	hdr := make([]byte, 8+len("hello\n"))
	if _, err := io.ReadFull(br, hdr); err != nil || string(hdr[8:]) != "hello\n" || hdr[0] != 1 {
		t.Fatalf("greeting %q %v", hdr, err)
	}
	if _, err := io.WriteString(c, "late"); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := demux(t, br)
	if err != nil || stdout != "got:early-late" || stderr != "warn\n" {
		t.Errorf("stdout %q stderr %q err %v", stdout, stderr, err)
	}
	if want := `attach web stdin=true stdout=true stderr=true stream=true logs=false keys="ctrl-x"`; !slices.Contains(fc.calls, want) {
		t.Errorf("backend calls %q", fc.calls)
	}

	// A TTY container has a raw stream; a client that does not ask to upgrade gets 200 OK.
	_, br, resp = rawRequest(t, srv, "POST /containers/tty/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: berth\r\n\r\n")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != mediaTypeRawStream {
		t.Fatalf("tty attach: %q %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	if b, err := io.ReadAll(br); err != nil || string(b) != "hello\n" {
		t.Errorf("tty output %q %v", b, err)
	}
	// Before API 1.42 the content type was raw even for multiplexed streams.
	_, br, resp = rawRequest(t, srv, "POST /v1.41/containers/web/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: berth\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
	if resp.StatusCode != 101 || resp.Header.Get("Content-Type") != mediaTypeRawStream {
		t.Errorf("1.41 attach: %q %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	if out, _, err := demux(t, br); err != nil || out != "hello\n" {
		t.Errorf("1.41 output %q %v", out, err)
	}
	// A failure after the upgrade reaches the client in the stream.
	_, br, resp = rawRequest(t, srv, "POST /containers/broken/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: berth\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
	if resp.StatusCode != 101 {
		t.Fatalf("broken attach: %q", resp.Status)
	}
	if _, _, err := demux(t, br); err == nil || !strings.Contains(err.Error(), "shim went away") {
		t.Errorf("broken attach error %v", err)
	}
	// Errors before the upgrade are plain HTTP errors.
	_, br, resp = rawRequest(t, srv, "POST /containers/stopped/attach?stream=1 HTTP/1.1\r\nHost: berth\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != 409 || errMessage(t, b) != "You cannot attach to a stopped container, start it first: conflict" {
		t.Errorf("stopped attach: %q %s", resp.Status, b)
	}
	_ = br
}

func TestContainerAttachClient(t *testing.T) {
	srv, _ := newContainerServer(t)
	cl := newClient(t, srv)
	ctx := testCtx(t)
	for _, c := range []struct {
		id   string
		tty  bool
		want string
	}{{"web", false, "hello\ngot:input"}, {"tty", true, "hello\ngot:input"}} {
		res, err := cl.ContainerAttach(ctx, c.id, client.ContainerAttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
		if err != nil {
			t.Fatalf("%s: %v", c.id, err)
		}
		mt, _ := res.MediaType()
		if wantMT := map[bool]string{false: mediaTypeMultiplexedStream, true: mediaTypeRawStream}[c.tty]; mt != wantMT {
			t.Errorf("%s: media type %q", c.id, mt)
		}
		if _, err := io.WriteString(res.Conn, "input"); err != nil {
			t.Fatal(err)
		}
		if err := res.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		var out string
		if c.tty {
			b, rerr := io.ReadAll(res.Reader)
			out, err = string(b), rerr
		} else {
			var stderr string
			out, stderr, err = demux(t, res.Reader)
			if stderr != "warn\n" {
				t.Errorf("%s: stderr %q", c.id, stderr)
			}
		}
		if err != nil || out != c.want {
			t.Errorf("%s: output %q %v", c.id, out, err)
		}
		res.Close()
	}
	if _, err := cl.ContainerAttach(ctx, "nope", client.ContainerAttachOptions{Stream: true, Stdout: true}); err == nil {
		t.Error("attach to a missing container succeeded")
	}
}

func TestContainerLogs(t *testing.T) {
	srv, fc := newContainerServer(t)
	resp, b := do(t, srv, "GET", "/v1.51/containers/web/logs?stdout=1&stderr=1&follow=1&timestamps=1&tail=10&since=1700000000.123456789&until=1700000100", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != mediaTypeMultiplexedStream {
		t.Fatalf("logs: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if out, errOut, err := demux(t, bytes.NewReader(b)); err != nil || out != "line1\n" || errOut != "oops\n" {
		t.Errorf("logs %q %q %v", out, errOut, err)
	}
	o := fc.logOpts
	if !o.Stdout || !o.Stderr || !o.Follow || !o.Timestamps || o.Tail != "10" ||
		o.Since.UnixNano() != 1700000000123456789 || o.Until.Unix() != 1700000100 {
		t.Errorf("logs options %+v", o)
	}
	do(t, srv, "GET", "/containers/web/logs?stdout=1&until=0", nil)
	if !fc.logOpts.Until.IsZero() || !fc.logOpts.Since.IsZero() || fc.logOpts.Stderr {
		t.Errorf("until=0 options %+v", fc.logOpts)
	}
	resp, b = do(t, srv, "GET", "/containers/tty/logs?stdout=1", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != mediaTypeRawStream || string(b) != "line1\r\nline2\r\n" {
		t.Errorf("tty logs: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	resp, _ = do(t, srv, "GET", "/v1.41/containers/web/logs?stdout=1", nil)
	if resp.Header.Get("Content-Type") != mediaTypeRawStream {
		t.Errorf("1.41 logs content type %q", resp.Header.Get("Content-Type"))
	}
	// A read error mid-stream is reported in band, as dockerd does.
	_, b = do(t, srv, "GET", "/containers/broken/logs?stdout=1", nil)
	if out, _, err := demux(t, bytes.NewReader(b)); out != "line1\n" || err == nil || !strings.Contains(err.Error(), "Error grabbing logs: log file vanished") {
		t.Errorf("broken logs %q %v", out, err)
	}

	cl := newClient(t, srv)
	ctx := testCtx(t)
	rc, err := cl.ContainerLogs(ctx, "web", client.ContainerLogsOptions{ShowStdout: true, Since: "1700000000.5", Tail: "all"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if out, _, err := demux(t, rc); err != nil || out != "line1\n" {
		t.Errorf("client logs %q %v", out, err)
	}
	if fc.logOpts.Since.UnixNano() != 1700000000500000000 || fc.logOpts.Tail != "" {
		t.Errorf("client logs options %+v", fc.logOpts)
	}
}

// TestContainerLogsFlushesHeaders: `logs -f` on a quiet container must get its response at once.
func TestContainerLogsFlushesHeaders(t *testing.T) {
	fc := &blockingLogs{fakeContainers: newFakeContainers(), pr: nil}
	pr, pw := io.Pipe()
	fc.pr = pr
	srv := httptest.NewServer(New(Config{Containers: fc}))
	defer srv.Close()
	ctx := testCtx(t)
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/containers/web/logs?stdout=1&follow=1", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// Each chunk is flushed as it comes.
	for _, s := range []string{"one\n", "two\n"} {
		if _, err := pw.Write(frame(1, s)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8+len(s))
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf[8:]) != s {
			t.Fatalf("chunk %q %v", buf, err)
		}
	}
	_ = pw.Close()
	if b, err := io.ReadAll(resp.Body); err != nil || len(b) != 0 {
		t.Errorf("tail %q %v", b, err)
	}
}

type blockingLogs struct {
	*fakeContainers
	pr *io.PipeReader
}

func (b *blockingLogs) ContainerLogs(context.Context, string, LogsOptions) (io.ReadCloser, bool, error) {
	return b.pr, false, nil
}

func TestContainerStats(t *testing.T) {
	srv, fc := newContainerServer(t)
	resp, b := do(t, srv, "GET", "/containers/web/stats", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("stats: %d %s", resp.StatusCode, b)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 {
		t.Fatalf("stream of %d objects: %s", len(lines), b)
	}
	for i, l := range lines {
		var st container.StatsResponse
		if err := json.Unmarshal([]byte(l), &st); err != nil || st.PidsStats.Current != uint64(i+1) || st.Name != "/web" {
			t.Errorf("line %d %s: %v", i, l, err)
		}
	}
	_, b = do(t, srv, "GET", "/containers/web/stats?stream=0&one-shot=1", nil)
	if fc.lastCall() != "stats web false" || strings.Count(string(b), "\n") != 1 {
		t.Errorf("one shot: %s (%s)", b, fc.lastCall())
	}

	cl := newClient(t, srv)
	res, err := cl.ContainerStats(testCtx(t), "web", client.ContainerStatsOptions{Stream: false})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var st container.StatsResponse
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil || st.ID != "0123456789abcdef" {
		t.Errorf("client stats %+v %v", st, err)
	}
}

func TestContainerArchive(t *testing.T) {
	srv, fc := newContainerServer(t)
	resp, b := do(t, srv, "HEAD", "/containers/web/archive?path=/etc/passwd", nil)
	if resp.StatusCode != 200 || len(b) != 0 {
		t.Fatalf("head: %d %q", resp.StatusCode, b)
	}
	raw, err := base64.StdEncoding.DecodeString(resp.Header.Get("X-Docker-Container-Path-Stat"))
	if err != nil {
		t.Fatal(err)
	}
	var st container.PathStat
	if err := json.Unmarshal(raw, &st); err != nil || st.Name != testPathStat.Name || st.Size != 42 || st.Mode != 0o644 || !st.Mtime.Equal(testPathStat.Mtime) {
		t.Errorf("stat header %s: %+v %v", raw, st, err)
	}
	resp, _ = do(t, srv, "HEAD", "/containers/web/archive?path=/nope", nil)
	if resp.StatusCode != 404 {
		t.Errorf("head of a missing path: %d", resp.StatusCode)
	}

	cl := newClient(t, srv)
	ctx := testCtx(t)
	sr, err := cl.ContainerStatPath(ctx, "web", client.ContainerStatPathOptions{Path: "/etc/passwd"})
	if err != nil || sr.Stat.Name != "passwd" || sr.Stat.Size != 42 || !sr.Stat.Mtime.Equal(testPathStat.Mtime) {
		t.Errorf("client stat %+v %v", sr.Stat, err)
	}
	if _, err := cl.ContainerStatPath(ctx, "web", client.ContainerStatPathOptions{Path: "/nope"}); !errdefs.IsNotFound(err) {
		t.Errorf("client stat of a missing path: %v", err)
	}
	cr, err := cl.CopyFromContainer(ctx, "web", client.CopyFromContainerOptions{SourcePath: "/etc/passwd"})
	if err != nil {
		t.Fatal(err)
	}
	tarData, err := io.ReadAll(cr.Content)
	_ = cr.Content.Close()
	if err != nil || string(tarData) != "PATH-TAR" || cr.Stat.Size != 42 {
		t.Errorf("client copy from: %q %+v %v", tarData, cr.Stat, err)
	}
	if _, err := cl.CopyToContainer(ctx, "web", client.CopyToContainerOptions{DestinationPath: "/tmp", Content: strings.NewReader("IN-TAR")}); err != nil {
		t.Fatal(err)
	}
	if fc.extracted != "IN-TAR" || !fc.extractOpts.NoOverwriteDirNonDir || fc.extractOpts.CopyUIDGID || fc.lastCall() != "extract web /tmp" {
		t.Errorf("extract got %q %+v %s", fc.extracted, fc.extractOpts, fc.lastCall())
	}
	// A tar sent as a form body must not be eaten by form parsing.
	req, _ := http.NewRequest("PUT", srv.URL+"/containers/web/archive?path=/x&copyUIDGID=1", strings.NewReader("a=b"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || fc.extracted != "a=b" || !fc.extractOpts.CopyUIDGID || fc.extractOpts.NoOverwriteDirNonDir {
		t.Errorf("form-typed put: %d %q %+v", resp.StatusCode, fc.extracted, fc.extractOpts)
	}
}

func TestExec(t *testing.T) {
	srv, fc := newContainerServer(t)
	resp, b := do(t, srv, "POST", "/containers/web/exec", strings.NewReader(`{"Cmd":["sh","-c","cat"],"AttachStdin":true,"AttachStdout":true,"Env":["A=b"]}`))
	if resp.StatusCode != 201 || strings.TrimSpace(string(b)) != `{"Id":"exec-web"}` {
		t.Fatalf("exec create: %d %s", resp.StatusCode, b)
	}
	if !fc.execReq.AttachStdin || fc.execReq.Env[0] != "A=b" {
		t.Errorf("exec request %+v", fc.execReq)
	}
	// Console size is dropped before API 1.42, as dockerd does.
	resp, b = do(t, srv, "POST", "/v1.41/containers/web/exec", strings.NewReader(`{"Cmd":["sh"],"ConsoleSize":[24,80]}`))
	if resp.StatusCode != 201 || fc.execReq.ConsoleSize != nil {
		t.Errorf("1.41 exec create: %d %s %v", resp.StatusCode, b, fc.execReq.ConsoleSize)
	}
	resp, b = do(t, srv, "POST", "/exec/exec-web/start", strings.NewReader(`{"Detach":true}`))
	if resp.StatusCode != 200 || len(b) != 0 || !fc.execOpts.Detach {
		t.Errorf("detached start: %d %q %+v", resp.StatusCode, b, fc.execOpts)
	}
	resp, b = do(t, srv, "GET", "/exec/exec-tty/json", nil)
	var insp container.ExecInspectResponse
	if resp.StatusCode != 200 || json.Unmarshal(b, &insp) != nil || insp.Pid != 42 || !insp.ProcessConfig.Tty {
		t.Errorf("exec inspect: %d %s", resp.StatusCode, b)
	}

	// Raw hijack with the body and early stdin in one write.
	body := `{"Detach":false,"Tty":false}`
	c, br, resp := rawRequest(t, srv, fmt.Sprintf("POST /exec/exec-web/start HTTP/1.1\r\nHost: berth\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%sabc", len(body), body))
	if resp.StatusCode != 101 || resp.Header.Get("Content-Type") != mediaTypeMultiplexedStream {
		t.Fatalf("exec start: %q %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if out, errOut, err := demux(t, br); err != nil || out != "hello\ngot:abc" || errOut != "warn\n" {
		t.Errorf("exec output %q %q %v", out, errOut, err)
	}

	// The Docker client, as `docker exec -i` drives it.
	cl := newClient(t, srv)
	ctx := testCtx(t)
	for _, tty := range []bool{false, true} {
		cr, err := cl.ExecCreate(ctx, "web", client.ExecCreateOptions{Cmd: []string{"cat"}, TTY: tty, AttachStdin: true, AttachStdout: true, AttachStderr: true})
		if err != nil {
			t.Fatal(err)
		}
		opts := client.ExecAttachOptions{TTY: tty}
		if tty {
			opts.ConsoleSize = client.ConsoleSize{Height: 24, Width: 80}
		}
		ar, err := cl.ExecAttach(ctx, cr.ID, opts)
		if err != nil {
			t.Fatalf("tty=%v: %v", tty, err)
		}
		if _, err := io.WriteString(ar.Conn, "in"); err != nil {
			t.Fatal(err)
		}
		if err := ar.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		var out string
		if tty {
			b, rerr := io.ReadAll(ar.Reader)
			out, err = string(b), rerr
			if fc.execOpts.ConsoleSize == nil || *fc.execOpts.ConsoleSize != [2]uint{24, 80} {
				t.Errorf("console size %v", fc.execOpts.ConsoleSize)
			}
		} else {
			out, _, err = demux(t, ar.Reader)
		}
		ar.Close()
		if err != nil || out != "hello\ngot:in" {
			t.Errorf("tty=%v: output %q %v", tty, out, err)
		}
		ir, err := cl.ExecInspect(ctx, cr.ID, client.ExecInspectOptions{})
		if err != nil || ir.ID != cr.ID || ir.PID != 42 {
			t.Errorf("client exec inspect %+v %v", ir, err)
		}
	}
	if _, err := cl.ExecStart(ctx, "exec-web", client.ExecStartOptions{Detach: true}); err != nil {
		t.Errorf("client detached exec: %v", err)
	}
	if _, err := cl.ExecAttach(ctx, "nope", client.ExecAttachOptions{}); err == nil {
		t.Error("exec attach of a missing exec succeeded")
	}
}

func TestRawConnPending(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	rc := &rawConn{conn: b, pending: []byte("buffered-")}
	go func() {
		_, _ = a.Write([]byte("live"))
		_ = a.Close()
	}()
	got, err := io.ReadAll(rc)
	if err != nil || string(got) != "buffered-live" {
		t.Errorf("read %q %v", got, err)
	}
	// net.Pipe cannot half-close: CloseWrite closes.
	if err := rc.CloseWrite(); err != nil {
		t.Error(err)
	}
	if err := rc.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestCheckPlatform(t *testing.T) {
	for p, ok := range map[string]bool{"": true, "linux": true, "linux/amd64": true, "Linux/arm64/v8": true,
		"windows": false, "linux/": false, "/amd64": false, "linux/a/b/c": false, "darwin/arm64": false} {
		if err := checkPlatform(p); (err == nil) != ok || (err != nil && !errdefs.IsInvalidArgument(err)) {
			t.Errorf("%q: %v", p, err)
		}
	}
}

func FuzzCreateRequest(f *testing.F) {
	for _, s := range []string{
		`{"Image":"busybox","Cmd":["sh"]}`,
		`{"Image":"busybox","HostConfig":{"Memory":1,"PortBindings":{"80/tcp":[{"HostPort":"8080"}]}},"ExposedPorts":{"80/tcp":{}}}`,
		`{"Image":"missing"}`,
		`null`, ``, `{`, `[]`, `{"Image":"busybox"}{}`, `{"Healthcheck":{"Interval":-1}}`, `"x"`,
		`{"Image":"busybox","NetworkingConfig":{"EndpointsConfig":{"a":null}}}`,
		`{"Image":"busybox","HostConfig":{"Mounts":[{"Type":"bind"}],"Ulimits":[null]}}`,
	} {
		f.Add([]byte(s))
	}
	h := New(Config{Containers: newFakeContainers(), Logger: slog.New(slog.DiscardHandler)})
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeCreateRequest(bytes.NewReader(body))
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("unclassified error %v", err)
			}
		} else if req.Config == nil || req.HostConfig == nil {
			t.Fatalf("decoded without config: %+v", req)
		}
		r := httptest.NewRequest("POST", "/v1.51/containers/create?name=x", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		switch rec.Code {
		case 201, 400, 404:
		default:
			t.Fatalf("%q: %d %s", body, rec.Code, rec.Body)
		}
	})
}

// FuzzContainerRequest sends arbitrary requests to the container and exec endpoints: query
// parsing (timeouts, sizes, timestamps, filters) must never end in a 500 or a panic.
func FuzzContainerRequest(f *testing.F) {
	for _, s := range []string{
		"POST /containers/web/stop?t=99999999999999999999&signal=x",
		"POST /containers/web/resize?h=65536&w=-0",
		"GET /containers/web/logs?stdout=1&since=1.%00&until=-1.5&tail=x",
		"GET /v1.44/containers/json?limit=-1&filters=%7B%22name%22%3A%5B%22a%22%5D%7D",
		"POST /containers/web/wait?condition=removed",
		"POST /containers/web/attach?stream=1&stdin=1",
		"POST /exec/exec-web/start",
		"GET /containers/web/stats?stream=0",
		"HEAD /containers/web/archive?path=%2Fetc%2Fpasswd",
		"PUT /containers/web/archive?path=/&noOverwriteDirNonDir=maybe",
		"DELETE /containers/web?force=true&link=0",
		"POST /containers/create?name=%2F&platform=linux%2F%2F",
	} {
		f.Add(s, "{}")
	}
	h := New(Config{Containers: newFakeContainers(), Logger: slog.New(slog.DiscardHandler)})
	f.Fuzz(func(t *testing.T, line, body string) {
		method, target, ok := strings.Cut(line, " ")
		if !ok || method == "" {
			return
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		// Wait, logs and stats may block or stream until the client goes away.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", strings.NewReader(body))
		req.Method, req.URL, req.RequestURI = method, u, target
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == 500 {
			t.Fatalf("%s: 500 %s", line, rec.Body)
		}
	})
}
