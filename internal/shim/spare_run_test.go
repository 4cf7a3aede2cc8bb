package shim

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/runtime/linux"
	"github.com/berth-dev/berth/internal/testutil"
)

// spareRun is a spare shim (as the daemon keeps them) given a prepared busybox container.
type spareRun struct {
	cmd  *exec.Cmd
	conn *os.File
	prep *linux.Prepared
	cfg  Config
	rt   *linux.Runtime
	done chan struct{}
}

// startSpare starts a spare and hands it a container running args; it returns before the
// daemon's part (Finish and the go-ahead byte), which the test does.
func startSpare(t *testing.T, args ...string) *spareRun {
	t.Helper()
	bin, bundle, id, sp := testBundle(t, args)
	dir, err := os.MkdirTemp("", "spare")
	if err != nil {
		t.Fatal(err)
	}
	rt := &linux.Runtime{Root: t.TempDir()}
	s := &spareRun{rt: rt, done: make(chan struct{}),
		cfg: Config{ID: id, Dir: dir, LogPath: filepath.Join(t.TempDir(), "log.json"), RuntimeRoot: rt.Root}}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.conn = os.NewFile(uintptr(fds[0]), "job")
	theirs := os.NewFile(uintptr(fds[1]), "job")
	s.cmd = exec.Command(bin, SpareArgs()...)
	s.cmd.Args[0] = "berth"
	s.cmd.Dir = dir
	s.cmd.ExtraFiles = []*os.File{theirs}
	s.cmd.Env = []string{SpareEnv}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		ctx := context.Background()
		_ = rt.Kill(ctx, id, syscall.SIGKILL, true)
		_ = s.cmd.Process.Kill()
		<-s.done
		_ = rt.Delete(ctx, id, true)
		if s.prep != nil {
			s.prep.Abort()
		}
		s.conn.Close()
		_ = os.RemoveAll(dir)
		testutil.RemoveCgroup(sp.Linux.CgroupsPath)
		testutil.RemoveCgroup("berth-shim-test")
	})
	if s.prep, err = rt.Prepare(context.Background(), id, bundle, sp, false); err != nil {
		t.Fatal(err)
	}
	p := s.prep
	job, err := (&SpareJob{Config: s.cfg, CloneFlags: uint64(p.CloneFlags), InitEnv: p.InitEnv, Program: p.Program,
		Procs: p.Procs, Fifo: p.Fifo, OOMCounter: p.OOMCounter, StateFile: p.StateFile,
		StatePrefix: p.StatePrefix, StateSuffix: p.StateSuffix}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.conn.Write(job); err != nil {
		t.Fatal(err)
	}
	return s
}

// processesOf lists the processes whose command line names id (the spare shows itself as
// `berth shim --id ID`, and so does the init it forks until it execs).
func processesOf(id string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), id) {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// TestSpareShim runs a container the daemon's way: prepared by the runtime, started by a spare.
func TestSpareShim(t *testing.T) {
	s := startSpare(t, "/bin/sh", "-c", "echo hello; exit 7")
	if err := s.prep.Finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.conn.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(s.conn).ReadString('\n')
	if err := SpareReport(line); err != nil {
		t.Fatalf("spare reported %q (%v)", line, err)
	}
	ctx := context.Background()
	c := NewClient(s.cfg.Dir)
	if st, err := c.State(ctx); err != nil || st.State != "created" || st.Pid <= 0 {
		t.Fatalf("state = %+v, %v", st, err)
	}
	// The runtime knows the container as its own: the spare wrote its state.
	if st, err := s.rt.State(ctx, s.cfg.ID); err != nil || st.Status != "created" {
		t.Fatalf("runtime state = %+v, %v", st, err)
	}
	if ps := processesOf(s.cfg.ID); len(ps) != 2 {
		t.Errorf("want the shim and its init: %q", ps)
	}
	if _, _, err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait(ctx)
	if err != nil || st.ExitCode != 7 {
		t.Fatalf("wait = %+v, %v", st, err)
	}
	b, _ := os.ReadFile(s.cfg.LogPath)
	if !strings.Contains(string(b), `"log":"hello\n"`) {
		t.Errorf("log lacks the output: %s", b)
	}
}

// TestSpareShimDies: a spare killed before the go-ahead (a daemon gone mid-start) takes its
// init with it, whatever the init was doing.
func TestSpareShimDies(t *testing.T) {
	s := startSpare(t, "true")
	// Once the init is there (it waits for its cgroup then)...
	for start := time.Now(); len(processesOf(s.cfg.ID)) < 2; time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no init: %q", processesOf(s.cfg.ID))
		}
	}
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-s.done
	deadline := time.Now().Add(5 * time.Second)
	for len(processesOf(s.cfg.ID)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if ps := processesOf(s.cfg.ID); len(ps) > 0 {
		t.Fatalf("processes left after the spare died: %q", ps)
	}
	// And a spare told no (its job socket shut) reports and leaves nothing either.
	s2 := startSpare(t, "true")
	_ = syscall.Shutdown(int(s2.conn.Fd()), syscall.SHUT_WR)
	line, _ := bufio.NewReader(s2.conn).ReadString('\n')
	if err := SpareReport(line); err == nil || !strings.Contains(err.Error(), "gave up") {
		t.Fatalf("report %q: %v", line, err)
	}
	<-s2.done
	if ps := processesOf(s2.cfg.ID); len(ps) > 0 {
		t.Fatalf("processes left after the spare gave up: %q", ps)
	}
}

// TestSpareShimLongError: the init's error reaches the daemon whole, however long: the daemon
// tells "executable file not found" (exit code 127) and "permission denied" (126) by the
// message, as Docker does.
func TestSpareShimLongError(t *testing.T) {
	// As long a name as the init's own message (1 KiB) carries whole.
	s := startSpare(t, strings.Repeat("a", 960))
	if err := s.prep.Finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.conn.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(s.conn).ReadString('\n')
	err := SpareReport(line)
	if err == nil || !strings.Contains(err.Error(), "executable file not found in $PATH") {
		t.Fatalf("report %q: %v", line, err)
	}
}
