package e2e

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
)

// TestDockerRun covers `docker run` as users type it: output, exit codes, --rm, errors.
func TestDockerRun(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	d.importBusybox(t, "busybox:latest", "-c", `CMD ["sh"]`)

	if out := d.mustDocker(t, nil, "run", "--rm", "busybox", "echo", "hi"); out != "hi\n" {
		t.Errorf("docker run --rm busybox echo hi = %q", out)
	}
	if r := d.docker(t, nil, "run", "--rm", "busybox", "sh", "-c", "exit 3"); r.code != 3 {
		t.Errorf("exit code: %s", r)
	}
	if r := d.berth(t, nil, "run", "--rm", "busybox", "sh", "-c", "exit 3"); r.code != 3 {
		t.Errorf("berth exit code: %s", r)
	}
	if out := d.mustBerth(t, nil, "run", "--rm", "-e", "A=b", "-w", "/tmp", "-u", "nobody", "busybox", "sh", "-c", "echo $A $(pwd) $(id -u)"); out != "b /tmp 65534\n" {
		t.Errorf("env/workdir/user = %q", out)
	}
	if r := d.docker(t, nil, "run", "--rm", "nosuchimage"); r.code != 125 || !strings.Contains(r.stderr, "Unable to find image") {
		t.Errorf("unknown image: %s", r)
	}
	if r := d.docker(t, nil, "run", "--rm", "busybox", "/no/such/cmd"); r.code != 127 && r.code != 126 {
		t.Errorf("missing command: %s", r)
	}
	// stdin through a pipe (-i, no TTY).
	if out := d.mustDocker(t, strings.NewReader("piped\n"), "run", "--rm", "-i", "busybox", "cat"); out != "piped\n" {
		t.Errorf("docker run -i cat = %q", out)
	}
	// --rm leaves nothing behind.
	if out := d.mustDocker(t, nil, "ps", "-aq"); out != "" {
		t.Errorf("containers left after --rm: %q", out)
	}
}

// TestDockerContainerLifecycle drives a detached container through every verb.
func TestDockerContainerLifecycle(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	d.importBusybox(t, "busybox:latest")

	id := strings.TrimSpace(d.mustDocker(t, nil, "run", "-d", "--name", "web", "-l", "tier=front", "busybox",
		"sh", "-c", "trap 'exit 0' TERM; i=0; while true; do echo line$i; i=$((i+1)); sleep 0.1; done"))
	if len(id) != 64 {
		t.Fatalf("run -d printed %q", id)
	}
	out := d.mustDocker(t, nil, "ps", "--filter", "label=tier=front", "--format", "{{.Names}} {{.State}}")
	if out != "web running\n" {
		t.Errorf("ps --filter label: %q", out)
	}
	if out := d.mustDocker(t, nil, "inspect", "-f", "{{.State.Running}} {{.Config.Labels.tier}} {{.Name}}", "web"); out != "true front /web\n" {
		t.Errorf("inspect: %q", out)
	}
	if out := d.mustDocker(t, nil, "exec", "web", "sh", "-c", "echo exec $HOSTNAME"); out != "exec "+id[:12]+"\n" {
		t.Errorf("exec: %q", out)
	}
	if r := d.docker(t, nil, "exec", "web", "sh", "-c", "exit 4"); r.code != 4 {
		t.Errorf("exec exit code: %s", r)
	}
	time.Sleep(300 * time.Millisecond)
	if out := d.mustDocker(t, nil, "logs", "--tail", "1", "web"); !strings.HasPrefix(out, "line") || strings.Count(out, "\n") != 1 {
		t.Errorf("logs --tail 1: %q", out)
	}
	// logs -f follows until the container stops.
	follow := exec.Command("docker", "logs", "-f", "web")
	follow.Env = append(os.Environ(), "DOCKER_HOST="+d.host, "DOCKER_CONFIG="+dockerConfig(t))
	var fo bytes.Buffer
	follow.Stdout = &fo
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	top := d.mustDocker(t, nil, "top", "web")
	if !strings.Contains(top, "PID") || !strings.Contains(top, "sleep") && !strings.Contains(top, "sh -c") {
		t.Errorf("top: %q", top)
	}
	if out := d.mustDocker(t, nil, "stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}"); !strings.HasPrefix(out, "web ") {
		t.Errorf("stats: %q", out)
	}
	// cp both ways.
	src := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(src, []byte("from host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.mustDocker(t, nil, "cp", src, "web:/tmp/")
	if out := d.mustDocker(t, nil, "exec", "web", "cat", "/tmp/in.txt"); out != "from host\n" {
		t.Errorf("cp in: %q", out)
	}
	dst := t.TempDir()
	d.mustDocker(t, nil, "cp", "web:/etc/passwd", dst)
	if b, err := os.ReadFile(filepath.Join(dst, "passwd")); err != nil || !bytes.HasPrefix(b, []byte("root:")) {
		t.Errorf("cp out: %q %v", b, err)
	}
	d.mustDocker(t, nil, "pause", "web")
	if out := d.mustDocker(t, nil, "inspect", "-f", "{{.State.Status}}", "web"); out != "paused\n" {
		t.Errorf("after pause: %q", out)
	}
	d.mustDocker(t, nil, "unpause", "web")
	d.mustDocker(t, nil, "update", "--memory", "128m", "web")
	if out := d.mustDocker(t, nil, "inspect", "-f", "{{.HostConfig.Memory}}", "web"); out != "134217728\n" {
		t.Errorf("after update: %q", out)
	}
	d.mustDocker(t, nil, "rename", "web", "web2")
	d.mustDocker(t, nil, "stop", "web2")
	if err := follow.Wait(); err != nil {
		t.Errorf("logs -f: %v", err)
	}
	if !strings.Contains(fo.String(), "line0\n") {
		t.Errorf("logs -f output: %q", fo.String())
	}
	if out := d.mustDocker(t, nil, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "web2"); out != "exited 0\n" {
		t.Errorf("after stop: %q", out)
	}
	if out := d.mustDocker(t, nil, "wait", "web2"); out != "0\n" {
		t.Errorf("wait: %q", out)
	}
	d.mustDocker(t, nil, "start", "web2")
	d.mustDocker(t, nil, "kill", "-s", "KILL", "web2")
	if out := d.mustDocker(t, nil, "wait", "web2"); out != "137\n" {
		t.Errorf("wait after kill: %q", out)
	}
	if out := d.mustDocker(t, nil, "ps", "-a", "--filter", "exited=137", "-q"); strings.TrimSpace(out) != id[:12] {
		t.Errorf("ps --filter exited=137: %q", out)
	}
	d.mustDocker(t, nil, "run", "-d", "--name", "victim", "busybox", "sleep", "100")
	if r := d.docker(t, nil, "rm", "victim"); r.code == 0 {
		t.Error("rm of a running container succeeded without -f")
	}
	d.mustDocker(t, nil, "rm", "-f", "victim", "web2")
	if out := d.mustDocker(t, nil, "ps", "-aq"); out != "" {
		t.Errorf("containers left: %q", out)
	}
}

// ptyRun runs a CLI command on a fresh pty, types input, and returns what the terminal showed
// and the exit code.
func ptyRun(t *testing.T, cmd *exec.Cmd, input string) (string, int) {
	t.Helper()
	master, slave, err := testutil.OpenPty()
	if err != nil {
		t.Skip("no pty:", err)
	}
	defer master.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		slave.Close()
		t.Fatal(err)
	}
	slave.Close()
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { _, _ = io.Copy(&out, master); close(done) }()
	time.Sleep(500 * time.Millisecond)
	_, _ = master.Write([]byte(input))
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var err2 error
	select {
	case err2 = <-waited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("interactive command hung; terminal so far: %q", out.String())
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	code := 0
	if ee, ok := err2.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return out.String(), code
}

// TestDockerInteractiveTTY types into `docker run -it` and `docker exec -it` through a pty.
func TestDockerInteractiveTTY(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	d.importBusybox(t, "busybox:latest")
	docker := func(args ...string) *exec.Cmd {
		c := exec.Command("docker", args...)
		c.Env = append(os.Environ(), "DOCKER_HOST="+d.host, "DOCKER_CONFIG="+dockerConfig(t))
		return c
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker CLI not installed")
	}
	out, code := ptyRun(t, docker("run", "-it", "--rm", "busybox", "sh"), "tty; echo typed-$((6*7)); exit 7\r")
	if code != 7 || !strings.Contains(out, "typed-42") || !strings.Contains(out, "/dev/pts/0") {
		t.Errorf("docker run -it: exit %d, terminal %q", code, out)
	}
	d.mustDocker(t, nil, "run", "-d", "--name", "box", "busybox", "sleep", "100")
	out, code = ptyRun(t, docker("exec", "-it", "box", "sh"), "echo in-exec-$((1+1)); exit 3\r")
	if code != 3 || !strings.Contains(out, "in-exec-2") {
		t.Errorf("docker exec -it: exit %d, terminal %q", code, out)
	}
	berthCmd := exec.Command(berthBin, "-H", d.host, "run", "-it", "--rm", "busybox", "sh")
	out, code = ptyRun(t, berthCmd, "echo berth-$((2+3)); exit 0\r")
	if code != 0 || !strings.Contains(out, "berth-5") {
		t.Errorf("berth run -it: exit %d, terminal %q", code, out)
	}
}

// TestDaemonKillKeepsContainers: SIGKILL the daemon while 20 containers run; they keep running,
// and a new daemon lists every container with its true state, including exits that happened
// while no daemon ran.
func TestDaemonKillKeepsContainers(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	d.importBusybox(t, "busybox:latest")
	pids := map[string]string{}
	for i := 0; i < 20; i++ {
		name := "long" + strconv.Itoa(i)
		d.mustBerth(t, nil, "run", "-d", "--name", name, "busybox", "sleep", "1000")
		pids[name] = strings.TrimSpace(d.mustBerth(t, nil, "inspect", "-f", "{{.State.Pid}}", name))
	}
	d.mustBerth(t, nil, "run", "-d", "--name", "short", "busybox", "sh", "-c", "sleep 2; exit 5")
	d.kill()
	time.Sleep(3 * time.Second) // "short" exits while the daemon is down
	for name, pid := range pids {
		n, _ := strconv.Atoi(pid)
		if n == 0 || syscall.Kill(n, 0) != nil {
			t.Errorf("%s (pid %s) died with the daemon", name, pid)
		}
	}
	d.start(t)
	out := d.mustBerth(t, nil, "ps", "--format", "{{.Names}}")
	if got := len(strings.Fields(out)); got != 20 {
		t.Errorf("after restart %d running containers, want 20:\n%s", got, out)
	}
	for name, pid := range pids {
		if got := strings.TrimSpace(d.mustBerth(t, nil, "inspect", "-f", "{{.State.Pid}}", name)); got != pid {
			t.Errorf("%s: pid %s after restart, was %s", name, got, pid)
		}
	}
	if out := d.mustDocker(t, nil, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "short"); out != "exited 5\n" {
		t.Errorf("short after restart: %q", out)
	}
	// The reconnected containers are fully controllable.
	d.mustDocker(t, nil, "stop", "-t", "1", "long0")
	if out := d.mustDocker(t, nil, "exec", "long1", "echo", "ok"); out != "ok\n" {
		t.Errorf("exec after restart: %q", out)
	}
}

// TestContainment checks what a default container cannot do.
func TestContainment(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	d.importBusybox(t, "busybox:latest")
	script := strings.Join([]string{
		`echo procs=$(ls -d /proc/[0-9]* | wc -l)`,
		`mount -t tmpfs none /mnt 2>/dev/null && echo mount=yes || echo mount=no`,
		`mount -o remount,rw / 2>/dev/null && echo remount=yes || echo remount=no`,
		`echo 1 > /proc/sys/vm/drop_caches 2>/dev/null && echo procsys=yes || echo procsys=no`,
		`head -c 16 /proc/kcore 2>/dev/null | wc -c | sed 's/^/kcore=/'`,
		`insmod /nonexistent.ko 2>&1 | grep -qi 'not permitted\|no such' && echo insmod=no || echo insmod=maybe`,
		`ls ` + d.socket + ` 2>/dev/null && echo sock=yes || echo sock=no`,
	}, "; ")
	out := d.mustDocker(t, nil, "run", "--rm", "busybox", "sh", "-c", script)
	for _, want := range []string{"mount=no", "remount=no", "procsys=no", "kcore=0", "insmod=no", "sock=no"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("containment: want %s in:\n%s", want, out)
		}
	}
	if n := procsOf(out); n == 0 || n > 6 {
		t.Errorf("container sees %d processes:\n%s", n, out)
	}
	// A memory hog under --memory 64m is OOM-killed and reported.
	r := d.docker(t, nil, "run", "--name", "hog", "--memory", "64m", "busybox", "sh", "-c", `x=$(head -c 300000000 /dev/zero | tr '\0' a)`)
	if r.code != 137 {
		t.Errorf("memory hog exit: %s", r)
	}
	if out := d.mustDocker(t, nil, "inspect", "-f", "{{.State.OOMKilled}}", "hog"); out != "true\n" {
		t.Errorf("OOMKilled = %q", out)
	}
	// A fork bomb under --pids-limit 100 is contained.
	r = d.docker(t, nil, "run", "--rm", "--pids-limit", "100", "busybox", "sh", "-c", `i=0; while [ $i -lt 150 ]; do i=$((i+1)); sleep 30 & done; echo all-forked`)
	if r.code == 0 || strings.Contains(r.stdout, "all-forked") {
		t.Errorf("fork bomb not contained: %s", r)
	}
}

func procsOf(out string) int {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "procs="); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// TestRestartPolicy: on-failure:2 restarts a failing container twice, then leaves it exited.
func TestRestartPolicy(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	d.importBusybox(t, "busybox:latest")
	d.mustDocker(t, nil, "run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 1")
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := d.mustDocker(t, nil, "inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "flaky")
		if out == "2 exited\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restart policy: %q", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCreateRm: `create --rm` marks the container for removal at exit, as docker's does.
func TestCreateRm(t *testing.T) {
	d := startDaemon(t)
	d.importBusybox(t, "busybox:latest")
	id := strings.TrimSpace(d.mustBerth(t, nil, "create", "--rm", "--network", "none", "busybox", "true"))
	if out := d.mustBerth(t, nil, "inspect", "--format", "{{.HostConfig.AutoRemove}}", id); strings.TrimSpace(out) != "true" {
		t.Fatalf("AutoRemove = %q", out)
	}
	d.mustBerth(t, nil, "start", "-a", id)
	for i := 0; ; i++ {
		if r := d.berth(t, nil, "inspect", id); r.code != 0 {
			break
		}
		if i == 200 {
			t.Fatal("create --rm container still there after it exited")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
