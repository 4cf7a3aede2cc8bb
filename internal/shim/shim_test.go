package shim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/runtime/linux"
	"github.com/berth-dev/berth/internal/testutil"
	"github.com/moby/moby/api/pkg/stdcopy"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The steady state is C inside the berth binary, so these tests run the real binary on real
// containers, as the daemon does.

var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

func berthBinary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "berth-shim-test-")
		if build.err == nil {
			build.path = filepath.Join(build.dir, "berth")
			build.err = testutil.BuildBerth(build.path)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

type testShim struct {
	*Client
	dir, log string
	rt       *linux.Runtime
	id       string
	done     chan struct{} // closed when the shim process ended
	pid      int           // the shim's
	output   *bytes.Buffer // the shim's stdout and stderr; read it only after done
}

// startShim creates a busybox container running args under a real `berth shim` and returns a
// client once the shim reported ok. cfg.LogPath, when set, is the log (else one in a temporary
// directory). Everything is removed when the test ends.
func startShim(t *testing.T, cfg Config, args ...string) *testShim {
	t.Helper()
	bin, bundle, id, sp := testBundle(t, args)
	sp.Process.Terminal = cfg.Terminal
	b, err := json.Marshal(sp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Socket paths are short: a directory under /tmp rather than the test's.
	dir, err := os.MkdirTemp("", "shim")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	rtRoot := t.TempDir()
	s := &testShim{Client: NewClient(dir), dir: dir, log: filepath.Join(t.TempDir(), "log.json"),
		rt: &linux.Runtime{Root: rtRoot}, id: id, done: make(chan struct{})}
	if cfg.LogPath != "" {
		s.log = cfg.LogPath
	}
	shimArgs := []string{"shim", "--id", id, "--bundle", bundle, "--dir", dir, "--log", s.log, "--runtime-root", rtRoot}
	if cfg.Terminal {
		shimArgs = append(shimArgs, "--tty")
	}
	if cfg.OpenStdin {
		shimArgs = append(shimArgs, "--stdin")
	}
	if cfg.StdinOnce {
		shimArgs = append(shimArgs, "--stdin-once")
	}

	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer readyR.Close()
	cmd := exec.Command(bin, shimArgs...)
	cmd.Args[0] = "berth"
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		t.Fatal(err)
	}
	s.pid, s.output = cmd.Process.Pid, &stderr
	go func() { _ = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		ctx := context.Background()
		_ = s.rt.Kill(ctx, id, syscall.SIGKILL, true)
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			t.Errorf("shim did not end; killing it")
			_ = cmd.Process.Kill()
			<-s.done
		}
		_ = s.rt.Delete(ctx, id, true)
		testutil.RemoveCgroup(sp.Linux.CgroupsPath)
		testutil.RemoveCgroup("berth-shim-test")
		if t.Failed() {
			t.Logf("shim output:\n%s", stderr.String())
		}
	})
	line, _ := bufio.NewReader(readyR).ReadString('\n')
	if strings.TrimSpace(line) != "ok" {
		t.Fatalf("shim reported %q", line)
	}
	return s
}

// testBundle makes a bundle directory with a busybox rootfs for a container running args, in
// its own cgroup below berth-shim-test, and returns the berth binary to run it with, the
// bundle, the container's ID and its spec (not written: the caller may change it).
func testBundle(t *testing.T, args []string) (bin, bundle, id string, sp *specs.Spec) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireBusybox(t)
	bin = berthBinary(t)
	bundle = t.TempDir()
	testutil.BusyboxRootfs(t, filepath.Join(bundle, "rootfs"))
	id = strings.ReplaceAll(t.Name(), "/", "_") + "-" + strconv.Itoa(os.Getpid())
	sp = linux.DefaultSpec("rootfs", args)
	sp.Linux.CgroupsPath = "berth-shim-test/" + id
	return bin, bundle, id, sp
}

func (s *testShim) logEntries(t *testing.T) []LogEntry {
	t.Helper()
	b, err := os.ReadFile(s.log)
	if err != nil {
		t.Fatal(err)
	}
	var out []LogEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e LogEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("bad log line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

func TestShimLogsAndExitCode(t *testing.T) {
	ctx := context.Background()
	s := startShim(t, Config{}, "/bin/sh", "-c", "echo hi; echo oops >&2; exit 3")
	if st, err := s.State(ctx); err != nil || st.State != "created" || st.Pid == 0 || !st.StartedAt.IsZero() {
		t.Fatalf("state before start = %+v, %v", st, err)
	}
	if _, _, err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode != 3 || st.State != "exited" || st.ExitedAt.IsZero() || st.StartedAt.IsZero() || st.OOMKilled {
		t.Fatalf("status = %+v, want exit 3", st)
	}
	var out, errs string
	for _, e := range s.logEntries(t) {
		if e.Stream == "stdout" {
			out += e.Log
		} else {
			errs += e.Log
		}
		if e.Time.IsZero() || time.Since(e.Time) > time.Minute {
			t.Errorf("log time %v", e.Time)
		}
	}
	if out != "hi\n" || errs != "oops\n" {
		t.Fatalf("log stdout=%q stderr=%q", out, errs)
	}
	fst, ok, err := ReadExitFile(s.dir)
	if err != nil || !ok || fst != st {
		t.Fatalf("exit file = %+v ok=%v err=%v; want %+v", fst, ok, err, st)
	}
	<-s.done
	if _, err := os.Stat(filepath.Join(s.dir, SocketName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
	// The shim is gone; the client answers from the exit file.
	if st2, err := s.State(ctx); err != nil || st2 != st {
		t.Fatalf("state after the shim ended = %+v, %v", st2, err)
	}
}

// TestShimLogParity runs tricky output through the container and checks that the C writer's
// entries decode to the same strings encoding/json gives for those bytes.
func TestShimLogParity(t *testing.T) {
	ctx := context.Background()
	// busybox printf: octal escapes. Invalid UTF-8, controls, HTML characters, U+2028, a line
	// longer than 16 KiB, CRs, and a last line without newline.
	script := `printf 'a\001\033[1m<b>&\342\200\250 \377\300\200 \355\240\200 \360\237\230\200 \t"q"\\ \r\n'; ` +
		`head -c 40000 /dev/zero | tr '\0' x; printf '\nlast\342\200'`
	s := startShim(t, Config{}, "/bin/sh", "-c", script)
	if _, _, err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	entries := s.logEntries(t)
	var got string
	for _, e := range entries {
		if e.Stream != "stdout" {
			t.Fatalf("entry on %s: %+v", e.Stream, e)
		}
		if len(e.Log) > 16*1024*3 {
			t.Fatalf("entry of %d bytes", len(e.Log))
		}
		got += e.Log
	}
	raw := "a\001\033[1m<b>&\342\200\250 \377\300\200 \355\240\200 \360\237\230\200 \t\"q\"\\ \r\n" + strings.Repeat("x", 40000) + "\nlast\342\200"
	// What encoding/json makes of the same bytes, line by line as the shim splits them.
	var want string
	for _, line := range splitLines([]byte(raw)) {
		b, err := json.Marshal(LogEntry{Log: string(line)})
		if err != nil {
			t.Fatal(err)
		}
		var e LogEntry
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		want += e.Log
	}
	if got != want {
		t.Fatalf("log differs:\n got %q\nwant %q", trunc(got), trunc(want))
	}
	if n := len(entries); n != 5 {
		t.Fatalf("%d entries, want 5 (line, 16K, 16K, rest, last)", n)
	}
}

// splitLines cuts b as the shim does: at newlines, and every 16 KiB without one.
func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := bytes.IndexByte(b, '\n') + 1
		if n == 0 || n > 16*1024 {
			n = min(len(b), 16*1024)
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:100] + "..." + s[len(s)-100:]
	}
	return s
}

// TestLogEntryEncoding compares the C entry encoder with encoding/json byte for byte.
func TestLogEntryEncoding(t *testing.T) {
	for _, in := range logSeeds() {
		checkLogEntry(t, in)
	}
}

func FuzzLogEntry(f *testing.F) {
	for _, s := range logSeeds() {
		f.Add(s)
	}
	f.Fuzz(checkLogEntry)
}

func logSeeds() [][]byte {
	seeds := [][]byte{nil, []byte("hello\n"), []byte("<script>&amp;</script>"), []byte("\x00\x01\x1f\x7f\b\f\n\r\t\"\\"),
		[]byte("\u2028\u2029 \ufffd é 日本 😀"), []byte("\xff\xfe\xc0\x80\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82"),
		[]byte("\xf0\x9f\x98"), []byte("\xe0\x9f\xbf \xf0\x8f\xbf\xbf"), bytes.Repeat([]byte("x\xce"), 100)}
	var all []byte
	for i := 0; i < 256; i++ {
		all = append(all, byte(i))
	}
	return append(seeds, all)
}

func checkLogEntry(t *testing.T, line []byte) {
	for _, ts := range []time.Time{time.Unix(1700000000, 123456780).UTC(), time.Unix(0, 0).UTC(), time.Unix(4102444799, 1).UTC(), time.Unix(951782400, 500000000).UTC()} {
		want, err := json.Marshal(LogEntry{Log: string(line), Stream: "stderr", Time: ts})
		if err != nil {
			t.Fatal(err)
		}
		got := cLogEntry("stderr", line, ts)
		if string(got) != string(want)+"\n" {
			t.Fatalf("entry for %q:\n got %s\nwant %s", line, got, want)
		}
	}
}

func TestShimAttachMultiplexedWithStdin(t *testing.T) {
	ctx := context.Background()
	s := startShim(t, Config{OpenStdin: true, StdinOnce: true}, "/bin/sh", "-c", "cat; echo done >&2")
	conn, br, err := s.Attach(ctx, true, true, true)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, _, err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.(interface{ CloseWrite() error }).CloseWrite()
	var out, errb bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &errb, br); err != nil {
		t.Fatal(err)
	}
	if out.String() != "hello\n" || errb.String() != "done\n" {
		t.Fatalf("attach stdout=%q stderr=%q", out.String(), errb.String())
	}
	st, err := s.Wait(ctx)
	if err != nil || st.ExitCode != 0 {
		t.Fatalf("wait = %+v, %v", st, err)
	}
}

func TestShimKill(t *testing.T) {
	ctx := context.Background()
	// The init is PID 1 of its namespace: only signals it handles reach it.
	s := startShim(t, Config{}, "/bin/sh", "-c", "trap 'exit 42' USR1; while :; do sleep 1 & wait; done")
	if st, ok, err := s.Start(ctx); err != nil || !ok || st.State != "running" || st.Pid <= 0 || st.StartedAt.IsZero() {
		t.Fatalf("start = %+v, %v, %v", st, ok, err)
	}
	if st, err := s.State(ctx); err != nil || st.State != "running" || st.StartedAt.IsZero() {
		t.Fatalf("state = %+v, %v", st, err)
	}
	if _, _, err := s.Start(ctx); err == nil || !strings.Contains(err.Error(), "is running, not created") {
		t.Fatalf("second start: %v", err)
	}
	if err := s.Kill(ctx, 0, false); err == nil || !strings.Contains(err.Error(), "invalid signal") {
		t.Fatalf("kill 0: %v", err)
	}
	// Many waiters at once, all answered.
	var wg sync.WaitGroup
	results := make([]Status, 5)
	for i := range results {
		wg.Add(1)
		go func() { defer wg.Done(); results[i], _ = s.Wait(ctx) }()
	}
	time.Sleep(50 * time.Millisecond) // let the waiters connect; the test holds either way
	if err := s.Kill(ctx, syscall.SIGUSR1, false); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, st := range results {
		if st.ExitCode != 42 || st.State != "exited" {
			t.Fatalf("wait = %+v; want 42", st)
		}
	}
	if _, _, err := s.Start(ctx); err == nil {
		t.Fatal("start of an exited container succeeded")
	}
}

func TestShimKillAll(t *testing.T) {
	ctx := context.Background()
	s := startShim(t, Config{}, "/bin/sh", "-c", "sleep 100 & sleep 100; wait")
	if _, _, err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Kill(ctx, syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	st, err := s.Wait(ctx)
	if err != nil || st.ExitCode != 137 {
		t.Fatalf("wait = %+v, %v; want 137", st, err)
	}
	<-s.done
	// The shim deleted the container from the runtime.
	if _, err := s.rt.State(ctx, s.id); err == nil {
		t.Fatal("container still known to the runtime after the shim ended")
	}
}

func TestShimTTY(t *testing.T) {
	ctx := context.Background()
	s := startShim(t, Config{Terminal: true, OpenStdin: true}, "/bin/sh", "-c", "stty size; read x; echo got:$x")
	conn, br, err := s.Attach(ctx, true, true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := s.Resize(ctx, 33, 99); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("abc\r")); err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(br)
	if !strings.Contains(string(all), "33 99") || !strings.Contains(string(all), "got:abc") {
		t.Fatalf("tty output = %q", all)
	}
	if _, err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	var logged string
	for _, e := range s.logEntries(t) {
		logged += e.Log
	}
	if !strings.Contains(logged, "got:abc") {
		t.Fatalf("tty log = %q", logged)
	}
}

func TestShimExec(t *testing.T) {
	ctx := context.Background()
	s := startShim(t, Config{}, "/bin/sleep", "100")
	if _, _, err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	conn, br, err := s.Exec(ctx, ExecRequest{ID: "e1", Stdin: true, Process: specs.Process{Args: []string{"/bin/sh", "-c", "cat; echo err >&2; exit 7"}, Cwd: "/"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.(interface{ CloseWrite() error }).CloseWrite()
	var out, errb bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &errb, br); err != nil {
		t.Fatal(err)
	}
	if out.String() != "ping\n" || errb.String() != "err\n" {
		t.Fatalf("exec stdout=%q stderr=%q", out.String(), errb.String())
	}
	st, err := s.ExecState(ctx, "e1")
	if err != nil || st.Running || st.ExitCode != 7 || st.Pid == 0 {
		t.Fatalf("exec state = %+v, %v", st, err)
	}
	dst, err := s.ExecDetached(ctx, ExecRequest{ID: "e2", Process: specs.Process{Args: []string{"/bin/true"}, Cwd: "/"}})
	if err != nil || dst.Pid == 0 {
		t.Fatalf("detached exec = %+v, %v", dst, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := s.ExecState(ctx, "e2")
		if err == nil && !st.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("detached exec never finished: %+v %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := s.ExecState(ctx, "nope"); err == nil {
		t.Fatal("unknown exec has a state")
	}
	if _, _, err := s.Exec(ctx, ExecRequest{ID: "e3", Process: specs.Process{Args: []string{"/no/such/binary"}, Cwd: "/"}}); err == nil || !strings.Contains(err.Error(), "exec failed") {
		t.Fatalf("exec of a missing binary: %v", err)
	}
	// A TTY exec: raw stream, resizable.
	conn, br, err = s.Exec(ctx, ExecRequest{ID: "e4", Stdin: true, Process: specs.Process{Args: []string{"/bin/sh", "-c", "read x; stty size; exit 5"}, Cwd: "/", Terminal: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := s.ExecResize(ctx, "e4", 12, 34); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("go\r")); err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(br)
	if !strings.Contains(string(all), "12 34") {
		t.Fatalf("tty exec output = %q", all)
	}
	if st, err := s.ExecState(ctx, "e4"); err != nil || st.ExitCode != 5 {
		t.Fatalf("tty exec state = %+v, %v", st, err)
	}
	_ = s.Kill(ctx, syscall.SIGKILL, false)
	if _, err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ExecDetached(ctx, ExecRequest{ID: "e5", Process: specs.Process{Args: []string{"/bin/true"}}}); err == nil {
		t.Fatal("exec in an exited container succeeded")
	}
}

// TestShimStdinOnceDroppedClient: with stdin-once, the container's stdin closes when the first
// attached client goes, also when the shim drops it for lagging (it never reads here) rather
// than when it closes its input; else `cat` waits forever.
func TestShimStdinOnceDroppedClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // hang guard only
	defer cancel()
	// 6 MB without a newline (16 KiB log entries): more than the 4 MiB a client may lag plus
	// what the socket buffers hold.
	s := startShim(t, Config{OpenStdin: true, StdinOnce: true}, "/bin/sh", "-c",
		`head -c 6000000 /dev/zero | tr '\0' x; cat; echo closed >&2`)
	conn, _, err := s.Attach(ctx, true, true, true)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, _, err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s.Wait(ctx)
	if err != nil {
		t.Fatalf("container did not exit: its stdin stayed open after the attached client was dropped: %v", err)
	}
	if st.ExitCode != 0 {
		t.Fatalf("status = %+v", st)
	}
	var errs string
	for _, e := range s.logEntries(t) {
		if e.Stream == "stderr" {
			errs += e.Log
		}
	}
	if errs != "closed\n" {
		t.Fatalf("stderr = %q", errs)
	}
}

// TestShimTermAfterExit: a SIGTERM that comes while the shim drains the output of a container
// that already exited must not lose the exit: the shim records it, then leaves.
func TestShimTermAfterExit(t *testing.T) {
	ctx := context.Background()
	s := startShim(t, Config{}, "/bin/sleep", "100")
	if _, _, err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Holding the container's stdout open from outside keeps the shim draining after the exit.
	out, err := os.OpenFile("/proc/"+strconv.Itoa(st.Pid)+"/fd/1", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := s.Kill(ctx, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	// The init's /proc entry goes when the shim reaps it.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat("/proc/" + strconv.Itoa(st.Pid)); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("container init not reaped")
		}
	}
	if err := syscall.Kill(s.pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-s.done
	fst, ok, err := ReadExitFile(s.dir)
	if err != nil || !ok || fst.ExitCode != 137 || fst.State != "exited" {
		t.Fatalf("exit file after SIGTERM = %+v ok=%v err=%v; want exit 137", fst, ok, err)
	}
}

// TestShimLogDiskFull: when the log's filesystem is full, entries are lost whole (none torn,
// which would also spoil the next one) and shim.log gets a message, not one per lost entry.
func TestShimLogDiskFull(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=32k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	ctx := context.Background()
	s := startShim(t, Config{LogPath: filepath.Join(dir, "log.json")}, "/bin/sh", "-c",
		`i=0; while [ $i -lt 2000 ]; do echo "line $i of output that fills the disk"; i=$((i+1)); done`)
	if _, _, err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Wait(ctx); err != nil || st.ExitCode != 0 {
		t.Fatalf("wait = %+v, %v", st, err)
	}
	<-s.done
	entries := s.logEntries(t) // fails on a torn line
	if len(entries) == 0 || len(entries) >= 2000 {
		t.Fatalf("%d entries logged; want some, not all", len(entries))
	}
	// Whole entries, in order (which ones fit once the disk is full is the filesystem's call).
	last := -1
	for i, e := range entries {
		num, ok := strings.CutPrefix(e.Log, "line ")
		num, ok2 := strings.CutSuffix(num, " of output that fills the disk\n")
		n, err := strconv.Atoi(num)
		if !ok || !ok2 || err != nil || n <= last {
			t.Fatalf("entry %d = %q after line %d", i, e.Log, last)
		}
		last = n
	}
	if n := strings.Count(s.output.String(), "write log"); n == 0 || n > 2 {
		t.Fatalf("%d messages about the log in the shim's output; want one or two:\n%s", n, trunc(s.output.String()))
	}
}
