package linux

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-dev/berth/internal/testutil"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		InitMain()
	}
	// Exec'd processes are grandchildren; adopt them so tests can wait for them.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	os.Exit(m.Run())
}

type testCtr struct {
	t      *testing.T
	rt     *Runtime
	id     string
	bundle string
	spec   *specs.Spec
}

// newCtr prepares a bundle with a busybox rootfs and a Docker-like spec running args. The
// container, its cgroup and its processes are removed when the test ends, pass or fail.
func newCtr(t *testing.T, args ...string) *testCtr {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireBusybox(t)
	bundle := t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	testutil.BusyboxRootfs(t, rootfs)
	id := strings.ReplaceAll(t.Name(), "/", "_") + "-" + strconv.Itoa(os.Getpid())
	sp := DefaultSpec("rootfs", args)
	sp.Hostname = "berth-test"
	sp.Linux.CgroupsPath = "berth-test-" + id
	c := &testCtr{t: t, rt: &Runtime{Root: t.TempDir()}, id: id, bundle: bundle, spec: sp}
	// c.id, not id: tests that run several containers give each its own ID.
	t.Cleanup(func() {
		err := c.rt.Delete(context.Background(), c.id, true)
		if err != nil && !errdefs.IsNotFound(err) {
			t.Errorf("cleanup delete: %v", err)
		}
	})
	return c
}

func (c *testCtr) writeSpec() {
	c.t.Helper()
	// Each container its own cgroup, also when a test changed c.id.
	c.spec.Linux.CgroupsPath = "berth-test-" + c.id
	b, err := json.Marshal(c.spec)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.bundle, "config.json"), b, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// create creates the container with stdout/stderr going to the returned reader.
func (c *testCtr) create(opts CreateOpts) *os.File {
	c.t.Helper()
	c.writeSpec()
	r, w, err := os.Pipe()
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { r.Close() })
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		c.t.Fatal(err)
	}
	defer devnull.Close()
	opts.Stdio = [3]*os.File{devnull, w, w}
	err = c.rt.Create(context.Background(), c.id, c.bundle, opts)
	w.Close()
	if err != nil {
		c.t.Fatalf("create: %v", err)
	}
	return r
}

// run creates, starts and waits for the container and returns its output and exit code.
func (c *testCtr) run() (string, int) {
	c.t.Helper()
	out := c.create(CreateOpts{})
	st, err := c.rt.State(context.Background(), c.id)
	if err != nil {
		c.t.Fatal(err)
	}
	if st.Status != specs.StateCreated {
		c.t.Fatalf("status after create = %s, want created", st.Status)
	}
	if err := c.rt.Start(context.Background(), c.id); err != nil {
		c.t.Fatalf("start: %v", err)
	}
	b, _ := io.ReadAll(out)
	code, err := WaitPid(st.Pid)
	if err != nil {
		c.t.Fatal(err)
	}
	return string(b), code
}

func TestRunEcho(t *testing.T) {
	c := newCtr(t, "echo", "hi")
	out, code := c.run()
	if out != "hi\n" || code != 0 {
		t.Fatalf("got %q exit %d, want \"hi\\n\" exit 0", out, code)
	}
	st, err := c.rt.State(context.Background(), c.id)
	if err != nil || st.Status != specs.StateStopped {
		t.Fatalf("state after exit = %+v, %v", st, err)
	}
}

func TestExitCode(t *testing.T) {
	c := newCtr(t, "sh", "-c", "exit 3")
	if _, code := c.run(); code != 3 {
		t.Fatalf("exit code %d, want 3", code)
	}
}

// TestIsolation checks several properties in one container to spare the shared CPUs.
func TestIsolation(t *testing.T) {
	script := `echo pid=$$
echo procs=$(ls /proc | grep -c '^[0-9]')
echo hostname=$(hostname)
if echo x > /proc/sys/kernel/hostname 2>/dev/null; then echo procsys=rw; else echo procsys=ro; fi
echo kcore=$(cat /proc/kcore | wc -c)
if mount -t tmpfs tmpfs /mnt 2>/dev/null; then echo mount=ok; else echo mount=denied; fi
echo nofile=$(ulimit -Hn)
echo null=$(ls -l /dev/null | cut -c1)
echo ptmx=$(readlink /dev/ptmx)
echo shm=$(grep ' /dev/shm ' /proc/mounts | grep -c size=65536k)
if touch /sys/x 2>/dev/null; then echo sys=rw; else echo sys=ro; fi
`
	c := newCtr(t, "sh", "-c", script)
	// Above this host's hard limit: must be clamped, not fatal.
	c.spec.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1 << 30, Soft: 1 << 30}}
	out, code := c.run()
	if code != 0 {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	var hard unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &hard); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"pid": "1", "hostname": "berth-test", "procsys": "ro", "kcore": "0", "mount": "denied",
		"nofile": strconv.FormatUint(hard.Max, 10), "null": "c", "ptmx": "pts/ptmx", "shm": "1", "sys": "ro",
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(l, "=")
		got[k] = v
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (output:\n%s)", k, got[k], v, out)
		}
	}
	// sh, ls, grep and the subshell: never the host's processes.
	if n, _ := strconv.Atoi(got["procs"]); n < 1 || n > 5 {
		t.Errorf("container sees %s processes, want only its own", got["procs"])
	}
}

func TestPidsLimit(t *testing.T) {
	// Try to start 50 sleepers under a limit of 10 processes; report the cgroup's count with
	// shell builtins only (anything else would need a fork). The loop runs in a subshell because
	// busybox sh exits when a fork fails.
	c := newCtr(t, "sh", "-c", `(for i in $(seq 1 50); do sleep 5 & done) 2>/dev/null
for f in /sys/fs/cgroup/pids/pids.current /sys/fs/cgroup/pids.current; do
  if [ -e $f ]; then read cur < $f; echo "cur=$cur"; fi
done`)
	limit := int64(10)
	c.spec.Linux.Resources.Pids = &specs.LinuxPids{Limit: &limit}
	out, _ := c.run()
	_, v, ok := strings.Cut(strings.TrimSpace(out), "cur=")
	n, err := strconv.Atoi(v)
	if !ok || err != nil || n > int(limit) || n < 2 {
		t.Fatalf("pids limit %d not enforced: output %q", limit, out)
	}
}

func TestMemoryLimitOOM(t *testing.T) {
	// busybox tail keeps a whole newline-free input in memory.
	c := newCtr(t, "sh", "-c", "head -c 300000000 /dev/zero | tail >/dev/null")
	limit := int64(64 << 20)
	c.spec.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &limit}
	_, code := c.run()
	if code == 0 {
		t.Fatalf("memory hog exited 0 under a 64m limit")
	}
	oom, err := c.rt.OOMKilled(context.Background(), c.id)
	if err != nil || !oom {
		t.Fatalf("OOMKilled = %v, %v; want true (exit %d)", oom, err, code)
	}
}

func TestPauseResumeExecKill(t *testing.T) {
	c := newCtr(t, "sh", "-c", "echo started; while true; do sleep 1; done")
	out := c.create(CreateOpts{})
	ctx := context.Background()
	if err := c.rt.Start(ctx, c.id); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 8)
	if _, err := io.ReadFull(out, line); err != nil || string(line) != "started\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	st, _ := c.rt.State(ctx, c.id)
	if st.Status != specs.StateRunning {
		t.Fatalf("status %s, want running", st.Status)
	}
	// Exec a process inside and collect its output.
	r, w, _ := os.Pipe()
	defer r.Close()
	p := *c.spec.Process
	p.Args = []string{"sh", "-c", "echo exec-ok $(hostname)"}
	pid, err := c.rt.Exec(ctx, c.id, p, ExecOpts{Stdio: [3]*os.File{nil, w, w}})
	w.Close()
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	b, _ := io.ReadAll(r)
	if code, err := WaitPid(pid); err != nil || code != 0 || string(b) != "exec-ok berth-test\n" {
		t.Fatalf("exec output %q exit %d %v", b, code, err)
	}
	pids, err := c.rt.Ps(ctx, c.id)
	if err != nil || len(pids) == 0 {
		t.Fatalf("ps = %v, %v", pids, err)
	}
	if err := c.rt.Pause(ctx, c.id); err != nil {
		t.Fatalf("pause: %v", err)
	}
	if st, _ := c.rt.State(ctx, c.id); st.Status != StatePaused {
		t.Fatalf("status %s, want paused", st.Status)
	}
	if err := c.rt.Delete(ctx, c.id, false); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("delete of paused container without force: %v", err)
	}
	if err := c.rt.Resume(ctx, c.id); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if st, _ := c.rt.State(ctx, c.id); st.Status != specs.StateRunning {
		t.Fatalf("status %s, want running", st.Status)
	}
	s, err := c.rt.Stats(ctx, c.id)
	if err != nil || s.Pids == 0 || s.MemoryUsage == 0 {
		t.Fatalf("stats = %+v, %v", s, err)
	}
	if err := c.rt.Kill(ctx, c.id, syscall.SIGKILL, false); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if code, err := WaitPid(st.Pid); err != nil || code != 128+9 {
		t.Fatalf("wait after kill: %d %v", code, err)
	}
	if err := c.rt.Kill(ctx, c.id, syscall.SIGKILL, false); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("kill of stopped container: %v", err)
	}
	if err := c.rt.Delete(ctx, c.id, false); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := c.rt.State(ctx, c.id); !errdefs.IsNotFound(err) {
		t.Fatalf("state after delete: %v", err)
	}
	if _, err := os.Stat(st.Bundle); err != nil {
		t.Fatal(err)
	}
}

// consoleListener listens on a unix socket and delivers the first pty master sent to it.
func consoleListener(t *testing.T) (string, <-chan *os.File) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "console.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan *os.File, 1)
	go func() {
		conn, err := l.AcceptUnix()
		if err != nil {
			got <- nil
			return
		}
		defer conn.Close()
		buf, oob := make([]byte, 64), make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			got <- nil
			return
		}
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		if len(msgs) != 1 {
			got <- nil
			return
		}
		fds, _ := unix.ParseUnixRights(&msgs[0])
		if len(fds) != 1 {
			got <- nil
			return
		}
		got <- os.NewFile(uintptr(fds[0]), "pty-master")
	}()
	return sock, got
}

// readUntil reads from a pty master until want shows up or the slave side is gone.
func readUntil(master *os.File, want string) string {
	var out bytes.Buffer
	buf := make([]byte, 256)
	for !strings.Contains(out.String(), want) {
		n, err := master.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return out.String()
}

func TestConsoleSocket(t *testing.T) {
	c := newCtr(t, "sh", "-c", "test -t 0 && echo tty-ok; sleep 100")
	c.spec.Process.Terminal = true
	sock, got := consoleListener(t)
	c.create(CreateOpts{ConsoleSocket: sock})
	master := <-got
	if master == nil {
		t.Fatal("no pty master received on the console socket")
	}
	defer master.Close()
	ctx := context.Background()
	st, _ := c.rt.State(ctx, c.id)
	if err := c.rt.Start(ctx, c.id); err != nil {
		t.Fatal(err)
	}
	if out := readUntil(master, "tty-ok"); !strings.Contains(out, "tty-ok") {
		t.Fatalf("console output %q", out)
	}
	// An exec'd process with its own terminal, as `docker exec -it` needs.
	esock, egot := consoleListener(t)
	p := *c.spec.Process
	p.Args = []string{"sh", "-c", "test -t 1 && echo exec-tty-ok"}
	pid, err := c.rt.Exec(ctx, c.id, p, ExecOpts{ConsoleSocket: esock})
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	emaster := <-egot
	if emaster == nil {
		t.Fatal("no pty master for the exec")
	}
	defer emaster.Close()
	if out := readUntil(emaster, "exec-tty-ok"); !strings.Contains(out, "exec-tty-ok") {
		t.Fatalf("exec console output %q", out)
	}
	if code, err := WaitPid(pid); err != nil || code != 0 {
		t.Fatalf("exec exit %d %v", code, err)
	}
	if err := c.rt.Kill(ctx, c.id, syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	if code, err := WaitPid(st.Pid); err != nil || code != 128+9 {
		t.Fatalf("exit %d %v", code, err)
	}
}

func TestUnknownContainer(t *testing.T) {
	rt := &Runtime{Root: t.TempDir()}
	ctx := context.Background()
	if _, err := rt.State(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Fatalf("state: %v", err)
	}
	if err := rt.Start(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Fatalf("start: %v", err)
	}
	if err := rt.Kill(ctx, "../x", 9, false); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("kill with bad id: %v", err)
	}
	if err := rt.Create(ctx, "x", t.TempDir(), CreateOpts{}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("create without config: %v", err)
	}
}

func TestUserNamespace(t *testing.T) {
	c := newCtr(t, "sh", "-c", `echo uid=$(id -u) map=$(cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //')`)
	c.spec.Linux.Namespaces = append(c.spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	c.spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	c.spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	// The init runs as host uid 100000: let it reach the bundle.
	for _, d := range []string{c.bundle, filepath.Dir(c.bundle)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out, code := c.run()
	if code != 0 || strings.TrimSpace(out) != "uid=0 map=0 100000 65536" {
		t.Fatalf("exit %d, output %q", code, out)
	}
}

func TestSeccompRule(t *testing.T) {
	c := newCtr(t, "sh", "-c", "mkdir /tmp/x 2>&1; echo rc=$?")
	eperm := uint(1)
	c.spec.Linux.Seccomp = &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: &eperm}},
	}
	out, _ := c.run()
	if !strings.Contains(out, "Operation not permitted") || !strings.Contains(out, "rc=1") {
		t.Fatalf("mkdir not blocked by seccomp: %q", out)
	}
}

// TestDeleteLater: the state directory is renamed aside for the caller (List no longer names
// it, the ID is free), and SweepGone removes what a caller left.
func TestDeleteLater(t *testing.T) {
	c := newCtr(t, "true")
	if _, code := c.run(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	left, err := c.rt.DeleteLater(context.Background(), c.id, false)
	if err != nil || left == "" {
		t.Fatalf("DeleteLater = %q, %v", left, err)
	}
	if _, err := os.Stat(filepath.Join(left, "state.json")); err != nil {
		t.Fatalf("state files not left aside: %v", err)
	}
	if ids, err := c.rt.List(context.Background()); err != nil || len(ids) != 0 {
		t.Fatalf("List = %v, %v", ids, err)
	}
	if _, err := c.rt.State(context.Background(), c.id); !errdefs.IsNotFound(err) {
		t.Fatalf("state after DeleteLater: %v", err)
	}
	c.rt.SweepGone()
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Fatalf("SweepGone left %s: %v", left, err)
	}
}

// TestDeleteUnfinished: a container whose supervisor died between Prepare (or Finish) and the
// state file (a daemon killed mid-start takes its spare shim's job with it) has a state
// directory and a cgroup but no state. A forced delete removes both, so that the container
// can be created again.
func TestDeleteUnfinished(t *testing.T) {
	c := newCtr(t, "true")
	c.writeSpec()
	ctx := context.Background()
	p, err := c.rt.Prepare(ctx, c.id, c.bundle, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Finish(); err != nil {
		p.Abort()
		t.Fatal(err)
	}
	if err := c.rt.Delete(ctx, c.id, false); !errdefs.IsNotFound(err) {
		t.Errorf("delete without force: %v, want not found", err)
	}
	if err := c.rt.Delete(ctx, c.id, true); err != nil {
		t.Fatalf("forced delete: %v", err)
	}
	if _, err := os.Stat(c.rt.dir(c.id)); !os.IsNotExist(err) {
		t.Errorf("state directory left: %v", err)
	}
	for _, f := range p.Procs {
		if _, err := os.Stat(filepath.Dir(f)); !os.IsNotExist(err) {
			t.Errorf("cgroup %s left: %v", filepath.Dir(f), err)
		}
	}
	p2, err := c.rt.Prepare(ctx, c.id, c.bundle, nil, false)
	if err != nil {
		t.Fatalf("prepare again: %v", err)
	}
	p2.Abort()
	if err := c.rt.Delete(ctx, "never-made", true); !errdefs.IsNotFound(err) {
		t.Errorf("forced delete of an unknown container: %v, want not found", err)
	}
}
