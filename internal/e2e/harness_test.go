package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
	"golang.org/x/sys/unix"
)

// berthBin is the binary built once by TestMain; empty when the tests are skipped.
var berthBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "berth-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		berthBin = filepath.Join(dir, "berth")
		if err := testutil.BuildBerth(berthBin); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// daemon is a running `berth daemon` on temporary roots.
type daemon struct {
	root, execRoot string
	cgroupParent   string
	// netTag names this daemon's bridges and nftables table, so that daemons running side by
	// side do not share them (networks_test.go).
	netTag  string
	host    string // unix://...
	socket  string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// newDaemon prepares (but does not start) a daemon on fresh temporary roots.
func newDaemon(t *testing.T) *daemon {
	t.Helper()
	testutil.RequireRoot(t)
	if berthBin == "" {
		t.Fatal("berth binary was not built")
	}
	d := &daemon{root: t.TempDir(), execRoot: t.TempDir()}
	d.cgroupParent = "/berth-e2e-" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(int(nextDaemon.Add(1)))
	d.socket = filepath.Join(d.execRoot, "berth.sock")
	d.host = "unix://" + d.socket
	d.logPath = filepath.Join(t.TempDir(), "daemon.log")
	d.netTag = netTag(d.cgroupParent)
	t.Cleanup(func() {
		unmountUnder(t, d.root, d.execRoot)
		testutil.RemoveCgroup(d.cgroupParent)
		removeNetObjects(t, d.netTag)
	})
	return d
}

// nextDaemon numbers daemons so that each gets a cgroup parent of its own.
var nextDaemon atomic.Int64

// startDaemon starts a daemon and waits until it answers /_ping; it is stopped on cleanup.
func startDaemon(t *testing.T) *daemon {
	t.Helper()
	d := newDaemon(t)
	d.start(t)
	return d
}

// startDaemonWith starts a daemon as startDaemon does, with extra `berth daemon` flags.
func startDaemonWith(t *testing.T, extra ...string) *daemon {
	t.Helper()
	d := newDaemon(t)
	d.start(t, extra...)
	return d
}

func (d *daemon) start(t *testing.T, extra ...string) {
	t.Helper()
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"daemon", "--root", d.root, "--exec-root", d.execRoot, "-H", d.host, "--log-level", "debug", "--cgroup-parent", d.cgroupParent,
		"--bridge", "be" + d.netTag, "--bridge-prefix", "e" + d.netTag + "-", "--nftables-table", "berth-e" + d.netTag}
	cmd := exec.Command(berthBin, append(args, extra...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start daemon: %v", err)
	}
	d.cmd, d.done = cmd, make(chan struct{})
	go func() {
		d.waitErr = cmd.Wait()
		logf.Close()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.removeContainers(t)
		d.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(d.logPath)
			t.Logf("daemon log:\n%s", b)
		}
	})
	d.waitReady(t)
}

// waitReady polls /_ping until the daemon answers or exits.
func (d *daemon) waitReady(t *testing.T) {
	t.Helper()
	hc := d.httpClient()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-d.done:
			b, _ := os.ReadFile(d.logPath)
			t.Fatalf("daemon exited before it was ready (%v):\n%s", d.waitErr, b)
		default:
		}
		resp, err := hc.Get("http://berth/_ping")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && string(body) == "OK" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready after 30s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *daemon) httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", d.socket)
		},
	}}
}

// removeContainers force-removes every container of a live daemon, so that no shim, container
// process, mount or cgroup outlives the test.
func (d *daemon) removeContainers(t *testing.T) {
	select {
	case <-d.done:
		return
	default:
	}
	r := d.berth(t, nil, "ps", "-aq", "--no-trunc")
	if ids := strings.Fields(r.stdout); len(ids) > 0 {
		d.berth(t, nil, append([]string{"rm", "-f"}, ids...)...)
	}
}

// stop sends SIGTERM and waits; a daemon that does not stop in time is killed.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if d.cmd == nil {
		return
	}
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		t.Errorf("daemon did not stop within 20s of SIGTERM; killing it")
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// kill SIGKILLs the daemon and waits for it.
func (d *daemon) kill() {
	_ = d.cmd.Process.Kill()
	<-d.done
}

// unmountUnder lazily unmounts whatever a test's daemon left mounted under dirs, deepest
// first, so that the temporary directories can be removed.
func unmountUnder(t *testing.T, dirs ...string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		for _, d := range dirs {
			if fields[4] == d || strings.HasPrefix(fields[4], d+"/") {
				mounts = append(mounts, fields[4])
			}
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		t.Logf("unmounting leftover mount %s", mounts[i])
		_ = unix.Unmount(mounts[i], unix.MNT_DETACH)
	}
}

// result of one CLI run.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

func runCmd(t *testing.T, cmd *exec.Cmd, stdin io.Reader) result {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errOut
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("run %v: %v", cmd.Args, err)
		}
		code = ee.ExitCode()
	}
	return result{out.String(), errOut.String(), code}
}

// berth runs the berth CLI against d.
func (d *daemon) berth(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	return runCmd(t, exec.Command(berthBin, append([]string{"-H", d.host}, args...)...), stdin)
}

// mustBerth is berth that fails the test on a non-zero exit.
func (d *daemon) mustBerth(t *testing.T, stdin io.Reader, args ...string) string {
	t.Helper()
	r := d.berth(t, stdin, args...)
	if r.code != 0 {
		t.Fatalf("berth %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// docker runs the real docker CLI against d; the test is skipped when docker is missing.
func (d *daemon) docker(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	path, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("skipping: the docker CLI is not installed")
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+d.host, "DOCKER_CONFIG="+dockerConfig(t), "DOCKER_CONTEXT=", "DOCKER_CLI_HINTS=false")
	return runCmd(t, cmd, stdin)
}

func (d *daemon) mustDocker(t *testing.T, stdin io.Reader, args ...string) string {
	t.Helper()
	r := d.docker(t, stdin, args...)
	if r.code != 0 {
		t.Fatalf("docker %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// dockerConfig is an empty per-test DOCKER_CONFIG so that the user's contexts and
// credential helpers play no part.
func dockerConfig(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "berth-e2e-docker-config-"+strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// importBusybox imports the busybox test root filesystem as name and returns the image ID.
func (d *daemon) importBusybox(t *testing.T, name string, extra ...string) string {
	t.Helper()
	testutil.RequireBusybox(t)
	args := append([]string{"import"}, extra...)
	args = append(args, "-", name)
	out := d.mustBerth(t, bytes.NewReader(testutil.BusyboxTar(t)), args...)
	id := strings.TrimSpace(out)
	if !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("import printed %q, want an image ID", out)
	}
	return id
}

// imageInfo is what the round-trip checks compare.
type imageInfo struct {
	ID       string
	RepoTags []string
	RootFS   struct{ Layers []string }
}

func (d *daemon) inspect(t *testing.T, ref string) imageInfo {
	t.Helper()
	out := d.mustBerth(t, nil, "image", "inspect", ref)
	var infos []imageInfo
	if err := json.Unmarshal([]byte(out), &infos); err != nil || len(infos) != 1 {
		t.Fatalf("image inspect %s: %v\n%s", ref, err, out)
	}
	return infos[0]
}
