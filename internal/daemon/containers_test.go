package daemon

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/api"
	"github.com/berth-dev/berth/internal/testutil"
	"github.com/moby/moby/api/pkg/stdcopy"
	mcontainer "github.com/moby/moby/api/types/container"
	bolt "go.etcd.io/bbolt"
)

// berthBinary builds the berth binary once per test process; the daemon starts it as the shim.
var buildOnce struct {
	sync.Once
	path string
	err  error
}

func berthBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "berth-bin-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "berth")
		buildOnce.err = testutil.BuildBerth(buildOnce.path)
	})
	if buildOnce.err != nil {
		t.Fatalf("build berth: %v", buildOnce.err)
	}
	return buildOnce.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildOnce.path != "" {
		_ = os.RemoveAll(filepath.Dir(buildOnce.path))
	}
	os.Exit(code)
}

// newTestDaemon makes a daemon on temporary roots with the busybox image imported. Cleanup
// removes every container (so no shim, mount or cgroup survives) and closes the store.
func newTestDaemon(t *testing.T) *Daemon {
	t.Helper()
	d, _ := newTestDaemonCancel(t)
	return d
}

// newTestDaemonCancel is newTestDaemon that also returns the cancel function of the daemon's
// lifetime context, for tests that simulate the daemon dying.
func newTestDaemonCancel(t *testing.T) (*Daemon, context.CancelFunc) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireBusybox(t)
	bin := berthBinary(t)
	root := t.TempDir()
	execRoot, err := os.MkdirTemp("/run", "berth-test-")
	if err != nil {
		t.Fatal(err)
	}
	cgParent := "/" + filepath.Base(execRoot)
	// Last of the cleanups: what the daemon's own cleanup (openTestDaemon) leaves.
	t.Cleanup(func() {
		_ = os.RemoveAll(execRoot)
		testutil.RemoveCgroup(cgParent)
	})
	cfg := Config{Root: root, ExecRoot: execRoot, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Binary: bin, CgroupParent: cgParent}
	// Kernel objects of this daemon get names of their own: test daemons run side by side.
	tag := fmt.Sprintf("%04x", crc32.ChecksumIEEE([]byte(execRoot))&0xffff)
	cfg.Bridge, cfg.BridgePrefix, cfg.NFTable = "bt"+tag, "b"+tag+"-", "berth-t"+tag
	d, cancel := openTestDaemon(t, cfg, true)
	if _, err := d.images.ImageImport(context.Background(), bytes.NewReader(testutil.BusyboxTar(t)), "busybox:latest", []string{`CMD ["sh"]`}, "", nil); err != nil {
		t.Fatal(err)
	}
	return d, cancel
}

// openTestDaemon starts a daemon on cfg; when the test ends its containers are removed (no
// shim, mount or cgroup survives), its network is taken down if teardown is set (a daemon
// reopened on another's root leaves that to the first), and it closes.
func openTestDaemon(t *testing.T, cfg Config, teardown bool) (*Daemon, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d, err := newDaemon(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range d.ctrs.all() {
			_ = d.ContainerRemove(context.Background(), c.rec.ID, true, true)
		}
		if teardown {
			if err := d.net.Teardown(); err != nil {
				t.Errorf("network teardown: %v", err)
			}
		}
		cancel()
		d.close()
	})
	return d, cancel
}

// run creates and starts a container and waits for it to exit, returning its exit code and
// its log.
func run(t *testing.T, d *Daemon, cfg *mcontainer.Config, hc *mcontainer.HostConfig) (string, int, string) {
	t.Helper()
	ctx := context.Background()
	if cfg.Image == "" {
		cfg.Image = "busybox"
	}
	cr, err := d.ContainerCreate(ctx, "", cfg, hc, nil)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	wc, err := d.ContainerWait(ctx, cr.ID, mcontainer.WaitConditionNextExit)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerStart(ctx, cr.ID); err != nil {
		t.Fatalf("start: %v", err)
	}
	var res mcontainer.WaitResponse
	select {
	case res = <-wc:
	case <-time.After(60 * time.Second):
		t.Fatal("container did not exit")
	}
	return cr.ID, int(res.StatusCode), logsOf(t, d, cr.ID)
}

func logsOf(t *testing.T, d *Daemon, id string) string {
	t.Helper()
	rc, tty, err := d.ContainerLogs(context.Background(), id, api.LogsOptions{Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out bytes.Buffer
	if tty {
		_, _ = io.Copy(&out, rc)
	} else if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestContainerRunEchoAndExitCode(t *testing.T) {
	d := newTestDaemon(t)
	_, code, out := run(t, d, &mcontainer.Config{Cmd: []string{"echo", "hi"}}, nil)
	if code != 0 || out != "hi\n" {
		t.Fatalf("echo hi: code %d, output %q", code, out)
	}
	_, code, _ = run(t, d, &mcontainer.Config{Cmd: []string{"sh", "-c", "exit 3"}}, nil)
	if code != 3 {
		t.Fatalf("exit 3 gave %d", code)
	}
}

func TestContainerIsolation(t *testing.T) {
	d := newTestDaemon(t)
	script := strings.Join([]string{
		`echo pid=$$`,
		`echo procs=$(ls /proc | grep -c '^[0-9]')`,
		`echo host=$(hostname)`,
		`mount -t tmpfs none /mnt 2>/dev/null && echo mount=yes || echo mount=no`,
		`echo 1 > /proc/sys/kernel/panic 2>/dev/null && echo sysw=yes || echo sysw=no`,
		`head -c 1 /proc/kcore >/dev/null 2>&1 && echo kcore=yes || echo kcore=no`,
		`id -u`,
	}, "; ")
	_, code, out := run(t, d, &mcontainer.Config{Cmd: []string{"sh", "-c", script}, Hostname: "boxy", User: "nobody"}, nil)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, want := range []string{"pid=1\n", "host=boxy\n", "mount=no\n", "sysw=no\n", "kcore=no\n", "65534\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// sh, the $( ) subshell, ls and grep: a handful, never the host's hundreds.
	var n int
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "procs="); ok {
			n, _ = strconv.Atoi(v)
		}
	}
	if n == 0 || n > 6 {
		t.Errorf("container sees %d processes:\n%s", n, out)
	}
}

func TestContainerStopKillRemove(t *testing.T) {
	d := newTestDaemon(t)
	ctx := context.Background()
	// PID 1 ignores SIGTERM unless it traps it, as in Docker.
	cr, err := d.ContainerCreate(ctx, "sleeper", &mcontainer.Config{Image: "busybox", Cmd: []string{"sh", "-c", "trap 'exit 143' TERM; sleep 1000 & wait"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.ContainerCreate(ctx, "sleeper", &mcontainer.Config{Image: "busybox", Cmd: []string{"true"}}, nil, nil); err == nil {
		t.Fatal("duplicate name accepted")
	}
	if err := d.ContainerStart(ctx, "sleeper"); err != nil {
		t.Fatal(err)
	}
	ins, err := d.ContainerInspect(ctx, "sleeper", false)
	if err != nil || !ins.State.Running || ins.State.Pid == 0 {
		t.Fatalf("inspect: %+v %v", ins.State, err)
	}
	if err := d.ContainerRemove(ctx, cr.ID, false, false); err == nil {
		t.Fatal("removed a running container without force")
	}
	if err := d.ContainerPause(ctx, "sleeper"); err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerUnpause(ctx, "sleeper"); err != nil {
		t.Fatal(err)
	}
	// The init execs the command just after start returns; give it a moment.
	var top mcontainer.TopResponse
	for i := 0; i < 100; i++ {
		if top, err = d.ContainerTop(ctx, "sleeper", ""); err == nil && len(top.Processes) == 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || len(top.Processes) != 2 {
		t.Fatalf("top = %+v, %v", top, err)
	}
	timeout := 10
	if err := d.ContainerStop(ctx, "sleeper", "", &timeout); err != nil {
		t.Fatal(err)
	}
	ins, _ = d.ContainerInspect(ctx, "sleeper", false)
	if ins.State.Running || ins.State.ExitCode != 143 {
		t.Fatalf("after stop: %+v", ins.State)
	}
	if err := d.ContainerRemove(ctx, "sleeper", false, false); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ContainerInspect(ctx, cr.ID, false); err == nil {
		t.Fatal("container still there after rm")
	}
	if _, err := os.Stat(d.ctrDir(cr.ID)); !os.IsNotExist(err) {
		t.Fatal("container directory left behind")
	}
}

func TestDaemonRestartKeepsContainers(t *testing.T) {
	d, die := newTestDaemonCancel(t)
	ctx := context.Background()
	mk := func(name string, cmd ...string) {
		if _, err := d.ContainerCreate(ctx, name, &mcontainer.Config{Image: "busybox", Cmd: cmd}, nil, nil); err != nil {
			t.Fatal(err)
		}
		if err := d.ContainerStart(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	mk("long", "sleep", "1000")
	mk("short", "sh", "-c", "sleep 1; exit 5")
	// A --network none container has no network record in the store (nothing to record but
	// its namespace, whose path derives from its ID): the restarted daemon must find it again.
	if _, err := d.ContainerCreate(ctx, "nonet", &mcontainer.Config{Image: "busybox", Cmd: []string{"sleep", "1000"}}, &mcontainer.HostConfig{NetworkMode: "none"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerStart(ctx, "nonet"); err != nil {
		t.Fatal(err)
	}
	nonet, _ := d.ContainerInspect(ctx, "nonet", false)
	if nonet.NetworkSettings == nil || nonet.NetworkSettings.SandboxKey == "" {
		t.Fatalf("nonet has no sandbox key: %+v", nonet.NetworkSettings)
	}
	nsKey := nonet.NetworkSettings.SandboxKey
	ins, _ := d.ContainerInspect(ctx, "long", false)
	pid := ins.State.Pid

	// The daemon goes away without touching its containers, as with SIGKILL.
	cfg := d.cfg
	stopMonitors(d, die)
	time.Sleep(1500 * time.Millisecond) // "short" exits while no daemon runs

	d2 := reopenDaemon(t, cfg)
	ins, err := d2.ContainerInspect(ctx, "long", false)
	if err != nil || !ins.State.Running || ins.State.Pid != pid {
		t.Fatalf("long after restart: %+v %v (pid before %d)", ins.State, err, pid)
	}
	ins, err = d2.ContainerInspect(ctx, "short", false)
	if err != nil || ins.State.Running || ins.State.ExitCode != 5 {
		t.Fatalf("short after restart: %+v %v", ins.State, err)
	}
	ins, err = d2.ContainerInspect(ctx, "nonet", false)
	if err != nil || !ins.State.Running || ins.NetworkSettings == nil || ins.NetworkSettings.SandboxKey != nsKey {
		t.Fatalf("nonet after restart: %+v %+v %v (sandbox key before %s)", ins.State, ins.NetworkSettings, err, nsKey)
	}
	if _, err := os.Stat(nsKey); err != nil {
		t.Fatalf("nonet's namespace after restart: %v", err)
	}
	if err := d2.ContainerRemove(ctx, "nonet", true, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(nsKey); !os.IsNotExist(err) {
		t.Fatalf("nonet's namespace left after rm: %v", err)
	}
	// The reconnected container is still controllable.
	if err := d2.ContainerKill(ctx, "long", "KILL"); err != nil {
		t.Fatal(err)
	}
	wc, _ := d2.ContainerWait(ctx, "long", mcontainer.WaitConditionNotRunning)
	select {
	case r := <-wc:
		if r.StatusCode != 137 {
			t.Fatalf("exit after kill = %d", r.StatusCode)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("killed container never exited")
	}
	// The first daemon's table is stale now; empty it so its cleanup leaves d2's alone.
	d.ctrs = newCtrIndex()
}

// reopenDaemon starts a daemon on cfg's root, as after a crash of the one that had it (see
// stopMonitors); it and its containers go when the test ends.
func reopenDaemon(t *testing.T, cfg Config) *Daemon {
	t.Helper()
	d, _ := openTestDaemon(t, cfg, false)
	return d
}

// stopMonitors makes a daemon forget its containers' shims as a killed daemon would: its
// monitors stop (die cancels the context they wait with, so none of them records an exit or
// removes a shim directory), the store closes, the containers keep running.
func stopMonitors(d *Daemon, die context.CancelFunc) {
	die()
	for _, c := range d.ctrs.all() {
		c.mu.Lock()
		c.shim = nil
		c.mu.Unlock()
	}
	_ = d.db.Close()
}

func TestContainerCopyExportDiff(t *testing.T) {
	d := newTestDaemon(t)
	ctx := context.Background()
	id, code, out := run(t, d, &mcontainer.Config{Cmd: []string{"sh", "-c", "echo data > /root/new; rm /etc/group; ln -s /etc/passwd /root/link"}}, nil)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	changes, err := d.ContainerChanges(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]mcontainer.ChangeType{}
	for _, c := range changes {
		got[c.Path] = c.Kind
	}
	if got["/root/new"] != mcontainer.ChangeAdd || got["/etc/group"] != mcontainer.ChangeDelete || got["/root"] != mcontainer.ChangeModify {
		t.Fatalf("changes = %+v", changes)
	}
	// docker cp ctr:/root/new - : a tar with "new" in it.
	rc, st, err := d.ContainerArchive(ctx, id, "/root/new")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if st.Name != "new" || st.Size != 5 || !bytes.Contains(b, []byte("data\n")) {
		t.Fatalf("archive stat %+v, %d bytes", st, len(b))
	}
	// The link points at the container's /etc/passwd, never the host's.
	rc, st, err = d.ContainerArchive(ctx, id, "/root/link")
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if st.LinkTarget != "/etc/passwd" {
		t.Fatalf("link stat = %+v", st)
	}
	if _, err := d.ContainerStatPath(ctx, id, "/nope"); err == nil {
		t.Fatal("stat of a missing path succeeded")
	}
	// docker cp file ctr:/tmp
	var tb bytes.Buffer
	tw := tarWriter(&tb)
	tw("hello.txt", "hello from host\n")
	if err := d.ContainerExtract(ctx, id, "/tmp", api.ArchiveOptions{}, &tb); err != nil {
		t.Fatal(err)
	}
	var ex bytes.Buffer
	if err := d.ContainerExport(ctx, id, &ex); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(ex.Bytes(), []byte("hello from host")) || !bytes.Contains(ex.Bytes(), []byte("bin/busybox")) {
		t.Fatal("export lacks the copied file or the image's content")
	}
	if m, _ := filepath.Glob(d.rootfsDir(id) + "/*"); len(m) != 0 {
		t.Fatal("rootfs of a stopped container left mounted")
	}
}

// tarWriter returns a function adding regular files to a tar in buf (closed on each add, so the
// buffer is always a complete archive of one file).
func tarWriter(buf *bytes.Buffer) func(name, content string) {
	return func(name, content string) {
		tw := tar.NewWriter(buf)
		_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg})
		_, _ = tw.Write([]byte(content))
		_ = tw.Close()
	}
}

func TestContainerLimits(t *testing.T) {
	d := newTestDaemon(t)
	// A memory hog under 64m is OOM-killed and reported as such.
	id, code, _ := run(t, d, &mcontainer.Config{Cmd: []string{"sh", "-c", `x=$(head -c 300000000 /dev/zero | tr '\0' a); echo survived`}},
		&mcontainer.HostConfig{Resources: mcontainer.Resources{Memory: 64 << 20}})
	ins, err := d.ContainerInspect(context.Background(), id, false)
	if err != nil {
		t.Fatal(err)
	}
	if !ins.State.OOMKilled || code != 137 {
		t.Fatalf("memory hog: exit %d, OOMKilled %v", code, ins.State.OOMKilled)
	}
	// A fork bomb under --pids-limit 100 is contained: past the cap, fork fails (busybox sh
	// then gives up), and the init's exit takes every process of the container with it.
	limit := int64(100)
	script := `i=0; while [ $i -lt 150 ]; do i=$((i+1)); sleep 30 & done; echo all-forked`
	_, code, out := run(t, d, &mcontainer.Config{Cmd: []string{"sh", "-c", script}},
		&mcontainer.HostConfig{Resources: mcontainer.Resources{PidsLimit: &limit}})
	if code == 0 || strings.Contains(out, "all-forked") || !strings.Contains(out, "can't fork") {
		t.Fatalf("fork bomb not contained: exit %d, output %q", code, out)
	}
}

func TestContainerInit(t *testing.T) {
	d := newTestDaemon(t)
	yes := true
	// With --init, PID 1 is the init and the command is its child; exit codes pass through.
	_, code, out := run(t, d, &mcontainer.Config{Cmd: []string{"sh", "-c", "echo ppid=$PPID; cat /proc/1/cmdline | tr '\\0' ' '; exit 4"}},
		&mcontainer.HostConfig{Init: &yes})
	if code != 4 || !strings.Contains(out, "ppid=1\n") || !strings.Contains(out, "/sbin/docker-init -- sh") {
		t.Fatalf("--init: exit %d, output %q", code, out)
	}
	// The init is the berth binary: variables that berth's own processes are started with,
	// set in the container's environment (by its image, say), must not turn it into them.
	for _, env := range []string{"_BERTH_CSPARE=1", "_BERTH_CSHIM=ls=3", "_BERTH_NSENTER=1:/nonexistent"} {
		_, code, out = run(t, d, &mcontainer.Config{Cmd: []string{"sh", "-c", "echo ran; exit 4"}, Env: []string{env}},
			&mcontainer.HostConfig{Init: &yes})
		if code != 4 || out != "ran\n" {
			t.Errorf("--init with %s: exit %d, output %q", env, code, out)
		}
	}
}

func TestContainerStartFailure(t *testing.T) {
	d := newTestDaemon(t)
	ctx := context.Background()
	cr, err := d.ContainerCreate(ctx, "", &mcontainer.Config{Image: "busybox", Cmd: []string{"/no/such/cmd"}}, &mcontainer.HostConfig{AutoRemove: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wc, err := d.ContainerWait(ctx, cr.ID, mcontainer.WaitConditionRemoved)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerStart(ctx, cr.ID); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("start of a missing command: %v", err)
	}
	select {
	case r := <-wc:
		if r.StatusCode != 127 {
			t.Fatalf("exit code %d, want 127", r.StatusCode)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a container whose start failed was never removed")
	}
}

// TestAutoRemoveRestart restarts a --rm container: its writable layer is mounted "volatile",
// which overlayfs refuses to mount twice unless the daemon clears the mark of a clean unmount.
func TestAutoRemoveRestart(t *testing.T) {
	d := newTestDaemon(t)
	ctx := context.Background()
	cr, err := d.ContainerCreate(ctx, "", &mcontainer.Config{Image: "busybox", Cmd: []string{"sh", "-c", "echo x >> /f; trap 'exit 0' TERM; sleep 1000 & wait"}}, &mcontainer.HostConfig{AutoRemove: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerStart(ctx, cr.ID); err != nil {
		t.Fatal(err)
	}
	timeout := 1 // the trap may not be set yet; then the kill follows at once
	if err := d.ContainerRestart(ctx, cr.ID, "", &timeout); err != nil {
		t.Fatalf("restart a --rm container: %v", err)
	}
	ins, err := d.ContainerInspect(ctx, cr.ID, false)
	if err != nil || !ins.State.Running {
		t.Fatalf("after restart: %+v %v", ins.State, err)
	}
	wc, err := d.ContainerWait(ctx, cr.ID, mcontainer.WaitConditionRemoved)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerKill(ctx, cr.ID, "KILL"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wc:
	case <-time.After(60 * time.Second):
		t.Fatal("--rm container not removed after it exited")
	}
	if _, err := d.ContainerInspect(ctx, cr.ID, false); err == nil {
		t.Fatal("--rm container still there after exit")
	}
}

// TestFailedStartLeavesNothing: the network is set up while the root filesystem is mounted;
// a start that fails on either side, or after both, leaves no mount and no network namespace.
func TestFailedStartLeavesNothing(t *testing.T) {
	d := newTestDaemon(t)
	ctx := context.Background()
	// A container that is not running: joining its network fails, after the mount succeeded.
	if _, err := d.ContainerCreate(ctx, "idle", &mcontainer.Config{Image: "busybox", Cmd: []string{"true"}}, &mcontainer.HostConfig{NetworkMode: "none"}, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  *mcontainer.Config
		hc   *mcontainer.HostConfig
		want string
	}{
		// The user is resolved after the mount, while the namespace is being made.
		{"user", &mcontainer.Config{Image: "busybox", Cmd: []string{"true"}, User: "nosuchuser"}, &mcontainer.HostConfig{NetworkMode: "none"}, "unable to find user"},
		{"network", &mcontainer.Config{Image: "busybox", Cmd: []string{"true"}}, &mcontainer.HostConfig{NetworkMode: "container:idle"}, "non running container"},
		// The spare shim has the job and started the init: the init fails, or the cgroup does.
		{"init", &mcontainer.Config{Image: "busybox", Cmd: []string{"nosuchcmd"}}, &mcontainer.HostConfig{NetworkMode: "none"}, `exec: "nosuchcmd": executable file not found`},
		{"cgroup", &mcontainer.Config{Image: "busybox", Cmd: []string{"true"}}, &mcontainer.HostConfig{NetworkMode: "none", Resources: mcontainer.Resources{CpusetCpus: "4095"}}, "cgroup"},
		// After it reported ready: the init's own words reach the error.
		{"after ready", &mcontainer.Config{Image: "busybox", Cmd: []string{"true"}}, &mcontainer.HostConfig{NetworkMode: "none", Resources: mcontainer.Resources{Ulimits: []*mcontainer.Ulimit{{Name: "nofile", Soft: 3, Hard: 3}}}}, "open exec fifo"},
	} {
		cr, err := d.ContainerCreate(ctx, "", tc.cfg, tc.hc, nil)
		if err != nil {
			t.Fatalf("%s: create: %v", tc.name, err)
		}
		if err := d.ContainerStart(ctx, cr.ID); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: start = %v, want an error with %q", tc.name, err, tc.want)
		}
		if testutil.Mounted(t, d.rootfsDir(cr.ID)) {
			t.Errorf("%s: root filesystem still mounted after a failed start", tc.name)
		}
		// The network manager's spares ("spare-*", made ahead of need) are not the container's.
		ents, _ := os.ReadDir(filepath.Join(d.cfg.ExecRoot, "netns"))
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), "spare-") {
				t.Errorf("%s: network namespace %s left after a failed start", tc.name, e.Name())
			}
		}
		ins, err := d.ContainerInspect(ctx, cr.ID, false)
		if err != nil || ins.State.Running || ins.State.Error == "" {
			t.Errorf("%s: state after a failed start: %+v %v", tc.name, ins.State, err)
		}
		if _, err := os.Stat(filepath.Join(d.runtimeRoot(), cr.ID)); !os.IsNotExist(err) {
			t.Errorf("%s: runtime state left after a failed start (%v)", tc.name, err)
		}
		for _, ctl := range []string{"pids", "memory", "devices", ""} {
			dir := filepath.Join("/sys/fs/cgroup", ctl, d.cgroupParent(), cr.ID)
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("%s: cgroup %s left after a failed start (%v)", tc.name, dir, err)
			}
		}
		// A shim that was running answers its clients for a few seconds before it ends.
		for start := time.Now(); len(shimsOf(t, cr.ID)) > 0 && time.Since(start) < 15*time.Second; {
			time.Sleep(20 * time.Millisecond)
		}
		if pids := shimsOf(t, cr.ID); len(pids) > 0 {
			t.Errorf("%s: shim processes %v left after a failed start", tc.name, pids)
		}
	}
}

// shimsOf returns the PIDs of processes whose command line names container id.
func shimsOf(t *testing.T, id string) []int {
	t.Helper()
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), id) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestRemovalFilesAfterReply: a removal deletes the container's files after its reply; a
// daemon that stops waits for that, and one that died before it was done leaves files that
// the next daemon deletes (and only those: a container's own stay).
func TestRemovalFilesAfterReply(t *testing.T) {
	d, die := newTestDaemonCancel(t)
	ctx := context.Background()
	id, _, _ := run(t, d, &mcontainer.Config{Cmd: []string{"true"}}, &mcontainer.HostConfig{NetworkMode: "none"})
	if err := d.ContainerRemove(ctx, id, false, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.ctrDir(id)); !os.IsNotExist(err) {
		t.Fatalf("container directory still in place after rm: %v", err)
	}
	d.bg.Wait()
	for _, dir := range []string{filepath.Join(d.cfg.Root, "containers"), filepath.Join(d.cfg.Root, "snapshots")} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "rm-") {
				t.Errorf("%s/%s left after the removal finished", dir, e.Name())
			}
		}
	}

	if _, err := d.ContainerCreate(ctx, "keep", &mcontainer.Config{Image: "busybox", Cmd: []string{"true"}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	keep, err := d.ctrs.get("keep")
	if err != nil {
		t.Fatal(err)
	}
	// What a daemon that died between a removal's reply and the deletion of the files leaves.
	gone := newID()
	left := []string{d.ctrDir(gone), filepath.Join(d.cfg.Root, "containers", "rm-"+newID()), d.shimDir(gone)}
	for _, p := range left {
		if err := os.MkdirAll(filepath.Join(p, "rootfs"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "f"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := d.cfg
	stopMonitors(d, die)
	d2 := reopenDaemon(t, cfg)
	for _, p := range left {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after a restart: %v", p, err)
		}
	}
	if _, err := os.Stat(d2.ctrDir(keep.rec.ID)); err != nil {
		t.Errorf("directory of a container that exists: %v", err)
	}
}

// TestRestoreInterruptedStart: a daemon that died during a start left a record that still says
// created. The restarted daemon adopts the container if it got as far as running, and otherwise
// takes down what the start had set up.
func TestRestoreInterruptedStart(t *testing.T) {
	d, die := newTestDaemonCancel(t)
	ctx := context.Background()
	none := &mcontainer.HostConfig{NetworkMode: "none"}
	// Died after the container started, before its record said so.
	pid := startedUnrecorded(t, d, "started", ctrState{Status: mcontainer.StateCreated})
	// Died after the root filesystem was mounted.
	cr, err := d.ContainerCreate(ctx, "mounted", &mcontainer.Config{Image: "busybox", Cmd: []string{"true"}}, none, nil)
	if err != nil {
		t.Fatal(err)
	}
	mc, _ := d.ctrs.get("mounted")
	mc.mu.Lock()
	if !mc.takePremount() { // the create mounts it ahead of a start
		if err := mountRootfs(mc.mounts, d.rootfsDir(cr.ID), false, d.bootID); err != nil {
			t.Fatal(err)
		}
	}
	mc.mu.Unlock()
	cfg := d.cfg
	stopMonitors(d, die)
	d2 := reopenDaemon(t, cfg)
	expectAdopted(t, d2, "started", pid)
	if testutil.Mounted(t, d2.rootfsDir(cr.ID)) {
		t.Error("root filesystem of a created container still mounted after restart")
	}
	ins, err := d2.ContainerInspect(ctx, "mounted", false)
	if err != nil || ins.State.Status != mcontainer.StateCreated {
		t.Fatalf("mounted container after restart: %+v %v", ins.State, err)
	}
	if err := d2.ContainerStart(ctx, "mounted"); err != nil {
		t.Fatalf("start after restart: %v", err)
	}
}

// TestRestoreInterruptedRestart: a daemon that died while it started a stopped container left
// a record that still says exited. The restarted daemon adopts the container that runs: it is
// not left running where nothing sees it.
func TestRestoreInterruptedRestart(t *testing.T) {
	d, die := newTestDaemonCancel(t)
	// The record of the run before, as the start had not saved its own yet.
	pid := startedUnrecorded(t, d, "again", ctrState{Status: mcontainer.StateExited, ExitCode: 3, FinishedAt: time.Now().UTC()})
	cfg := d.cfg
	stopMonitors(d, die)
	d2 := reopenDaemon(t, cfg)
	expectAdopted(t, d2, "again", pid)
	d.ctrs = newCtrIndex()
}

// TestInitLayer: the image lacks /etc/hosts, /etc/hostname and /etc/resolv.conf; their bind
// targets come from the image's init layer, made once, not from the container's writable layer
// (no copy-up of /etc at each start, nothing in docker diff).
func TestInitLayer(t *testing.T) {
	d := newTestDaemon(t)
	ctx := context.Background()
	id, code, out := run(t, d, &mcontainer.Config{Cmd: []string{"sh", "-c", "cat /etc/hostname; grep -c localhost /etc/hosts; ls /etc"}},
		&mcontainer.HostConfig{NetworkMode: "none"})
	if code != 0 || !strings.Contains(out, id[:12]) {
		t.Fatalf("exit %d, output %q", code, out)
	}
	c, err := d.ctrs.get(id)
	if err != nil {
		t.Fatal(err)
	}
	layer := filepath.Join(d.initLayersDir(), c.snapshotOf().ChainID)
	for _, f := range initLayerTargets {
		fi, err := os.Stat(filepath.Join(layer, f))
		if err != nil || fi.Size() != 0 {
			t.Errorf("init layer %s: %v", f, err)
		}
	}
	upper, err := d.snap.UpperDir(ctx, snapKey(id))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(upper, "etc")); !os.IsNotExist(err) {
		t.Errorf("the container's writable layer has /etc: %v", err)
	}
	changes, err := d.ContainerChanges(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 0 {
		t.Errorf("docker diff shows %v", changes)
	}
	// A second container of the image reuses the layer; a restart sweeps it only once the
	// image's layers are gone.
	if _, code, _ := run(t, d, &mcontainer.Config{Cmd: []string{"true"}}, &mcontainer.HostConfig{NetworkMode: "none"}); code != 0 {
		t.Fatalf("second container: exit %d", code)
	}
	d.sweepInitLayers(ctx)
	if _, err := os.Stat(layer); err != nil {
		t.Errorf("the init layer of a present image was swept: %v", err)
	}
	stale := filepath.Join(d.initLayersDir(), "sha256:0000")
	if err := os.MkdirAll(filepath.Join(stale, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	d.sweepInitLayers(ctx)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the init layer of a gone image stayed: %v", err)
	}
}

func TestLookupLayers(t *testing.T) {
	top, mid, base := t.TempDir(), t.TempDir(), t.TempDir()
	mk := func(dir, p string, isDir bool) {
		t.Helper()
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if isDir {
			if err := os.MkdirAll(full, 0o750); err != nil {
				t.Fatal(err)
			}
			return
		}
		if err := os.WriteFile(full, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk(base, "etc/hosts", false)
	mk(base, "etc/hostname", false)
	mk(base, "opt/x", false)
	mk(mid, "etc", true)
	mk(mid, "var", true)
	if err := syscall.Mknod(filepath.Join(mid, "etc/hostname"), syscall.S_IFCHR, 0); err != nil {
		t.Fatal(err) // a whiteout
	}
	mk(top, "srv", true)
	if err := os.Symlink("/var", filepath.Join(top, "opt")); err != nil {
		t.Fatal(err)
	}
	mk(top, "data", true)
	if err := syscall.Setxattr(filepath.Join(top, "data"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Skipf("no trusted xattrs here: %v", err)
	}
	mk(base, "data/old", false)
	lowers := []string{top, mid, base}
	for p, want := range map[string]pathState{
		"etc/hosts": pathOther, "etc/hostname": pathAbsent, "etc/resolv.conf": pathAbsent, "etc": pathDir,
		"opt/x": pathOther, "opt": pathOther, "data/old": pathAbsent, "srv": pathDir, "nope/x": pathAbsent,
	} {
		if got, _ := lookupLayers(lowers, p); got != want {
			t.Errorf("%s: %v, want %v", p, got, want)
		}
	}
}

// TestPremount: a create mounts the root filesystem ahead of the start, which takes it; a
// container that is not started gives the mount up after a while, and a removal at once.
func TestPremount(t *testing.T) {
	d := newTestDaemon(t)
	d.premountTTL = 200 * time.Millisecond
	ctx := context.Background()
	none := &mcontainer.HostConfig{NetworkMode: "none"}
	waitMounted := func(id string, want bool) {
		t.Helper()
		for start := time.Now(); testutil.Mounted(t, d.rootfsDir(id)) != want; time.Sleep(10 * time.Millisecond) {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s: mounted is not %v", id, want)
			}
		}
	}
	idle, err := d.ContainerCreate(ctx, "", &mcontainer.Config{Image: "busybox", Cmd: []string{"true"}}, none, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitMounted(idle.ID, true)
	waitMounted(idle.ID, false)
	// Started later, it mounts again.
	wc, err := d.ContainerWait(ctx, idle.ID, mcontainer.WaitConditionNextExit)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerStart(ctx, idle.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-wc:
		if res.StatusCode != 0 {
			t.Fatalf("exit code %d", res.StatusCode)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("container did not exit")
	}
	gone, err := d.ContainerCreate(ctx, "", &mcontainer.Config{Image: "busybox", Cmd: []string{"true"}}, none, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerRemove(ctx, gone.ID, false, false); err != nil {
		t.Fatal(err)
	}
	if testutil.Mounted(t, d.rootfsDir(gone.ID)) {
		t.Fatal("root filesystem mounted after the removal")
	}
	// And the common case: run right after create.
	if _, code, out := run(t, d, &mcontainer.Config{Cmd: []string{"sh", "-c", "echo ok > /f; cat /f"}}, none); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("run: %d %q", code, out)
	}
}

// TestCreateFailsWhole: a create whose /etc files fail (they are written while the record is
// stored) leaves no record, snapshot, directory or name behind.
func TestCreateFailsWhole(t *testing.T) {
	d := newTestDaemon(t)
	ctx := context.Background()
	_, err := d.ContainerCreate(ctx, "bad", &mcontainer.Config{Image: "busybox", Cmd: []string{"true"}},
		&mcontainer.HostConfig{NetworkMode: "none", ExtraHosts: []string{"no-colon"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "--add-host") {
		t.Fatalf("create = %v", err)
	}
	if _, err := d.ctrs.get("bad"); err == nil {
		t.Fatal("the failed container is listed")
	}
	if ents, _ := os.ReadDir(filepath.Join(d.cfg.Root, "containers")); len(ents) > 0 {
		t.Errorf("container directories left: %v", ents)
	}
	_ = d.db.View(func(tx *bolt.Tx) error {
		if bk := tx.Bucket(containersBucket); bk != nil && bk.Stats().KeyN > 0 {
			t.Errorf("%d records left", bk.Stats().KeyN)
		}
		return nil
	})
	// The name is free again.
	if _, err := d.ContainerCreate(ctx, "bad", &mcontainer.Config{Image: "busybox", Cmd: []string{"true"}}, &mcontainer.HostConfig{NetworkMode: "none"}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestHostNetworkHostname: on the host's network a container has the host's name, as in Docker.
func TestHostNetworkHostname(t *testing.T) {
	d := newTestDaemon(t)
	want, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	_, code, out := run(t, d, &mcontainer.Config{Cmd: []string{"hostname"}}, &mcontainer.HostConfig{NetworkMode: "host"})
	if code != 0 || strings.TrimSpace(out) != want {
		t.Fatalf("hostname = %q (exit %d), want %q", out, code, want)
	}
}

// expectAdopted checks that a restarted daemon took container name over as running with init
// pid, and that it monitors it: a kill is seen as its exit.
func expectAdopted(t *testing.T, d *Daemon, name string, pid int) {
	t.Helper()
	ctx := context.Background()
	ins, err := d.ContainerInspect(ctx, name, false)
	if err != nil || !ins.State.Running || ins.State.Pid != pid {
		t.Fatalf("%s after restart: %+v %v (pid before %d)", name, ins.State, err, pid)
	}
	wc, _ := d.ContainerWait(ctx, name, mcontainer.WaitConditionNotRunning)
	if err := d.ContainerKill(ctx, name, "KILL"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-wc:
		if r.StatusCode != 137 {
			t.Fatalf("%s: exit after kill = %d", name, r.StatusCode)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: adopted container's exit not seen", name)
	}
}

// startedUnrecorded runs container name (a sleeper) and stores st as its record, as a daemon
// that died before it saved the start left it; it returns the init's PID.
func startedUnrecorded(t *testing.T, d *Daemon, name string, st ctrState) int {
	t.Helper()
	ctx := context.Background()
	if _, err := d.ContainerCreate(ctx, name, &mcontainer.Config{Image: "busybox", Cmd: []string{"sleep", "1000"}}, &mcontainer.HostConfig{NetworkMode: "none"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerStart(ctx, name); err != nil {
		t.Fatal(err)
	}
	c, _ := d.ctrs.get(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	rec := c.rec
	rec.State = st
	if err := d.saveCtr(&rec); err != nil {
		t.Fatal(err)
	}
	return c.rec.State.Pid
}
