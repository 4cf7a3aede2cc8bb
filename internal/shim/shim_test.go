package shim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
	"github.com/moby/moby/api/pkg/stdcopy"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// procTask runs a plain host process in place of a container. Its init blocks on a pipe until
// Start, as the real runtime's init blocks on its sync fd.
type procTask struct {
	args    []string
	cmd     *exec.Cmd
	release *os.File
	master  *os.File
}

func (p *procTask) Create(ctx context.Context, tio TaskIO) (int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	p.release = w
	script := `read _ <&3; exec 3<&-; exec "$@"`
	p.cmd = exec.Command("/bin/sh", append([]string{"-c", script, "sh"}, p.args...)...)
	p.cmd.ExtraFiles = []*os.File{r}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if tio.Terminal {
		master, slave, err := testutil.OpenPty()
		if err != nil {
			return 0, err
		}
		defer slave.Close()
		p.master = master
		p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = slave, slave, slave
		p.cmd.SysProcAttr.Setctty = true
		p.cmd.SysProcAttr.Ctty = 0
	} else {
		p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = tio.Stdin, tio.Stdout, tio.Stderr
	}
	if err := p.cmd.Start(); err != nil {
		return 0, err
	}
	if tio.Terminal {
		if err := SendConsole(tio.ConsoleSocket, p.master); err != nil {
			return 0, err
		}
		_ = p.master.Close()
	}
	return p.cmd.Process.Pid, nil
}

func (p *procTask) Start(ctx context.Context) error {
	_, err := p.release.Write([]byte("go\n"))
	_ = p.release.Close()
	return err
}

func (p *procTask) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	return unix.Kill(p.cmd.Process.Pid, sig)
}
func (p *procTask) Exec(ctx context.Context, sp specs.Process, tio TaskIO) (int, error) {
	cmd := exec.Command(sp.Args[0], sp.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tio.Stdin, tio.Stdout, tio.Stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	return pid, nil
}

func (p *procTask) OOMKilled(ctx context.Context) bool { return false }
func (p *procTask) Delete(ctx context.Context) error   { return nil }

// startShim creates and serves a shim for args, returning it and a client.
func startShim(t *testing.T, cfg Config, args ...string) (*Shim, *Client) {
	t.Helper()
	cfg.ID = "test"
	cfg.Dir = t.TempDir()
	if cfg.LogPath == "" {
		cfg.LogPath = filepath.Join(cfg.Dir, "log.json")
	}
	ctx, cancel := context.WithCancel(context.Background())
	task := &procTask{args: args}
	s := New(cfg, task)
	l, err := s.Listen()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := s.Create(ctx); err != nil {
		cancel()
		_ = l.Close()
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { _ = s.Serve(ctx, l); close(served) }()
	t.Cleanup(func() {
		if s.Status().State != "exited" {
			_ = task.Kill(context.Background(), syscall.SIGKILL, true)
			if s.Status().State == "created" {
				_ = task.Start(context.Background())
			}
		}
		<-s.Exited()
		cancel()
		<-served
	})
	c := NewClient(cfg.Dir)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := c.State(ctx); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("shim socket never came up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s, c
}

func readLog(t *testing.T, path string) []LogEntry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []LogEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
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
	s, c := startShim(t, Config{}, "/bin/sh", "-c", "echo hi; echo oops >&2; exit 3")
	if st, _ := c.State(ctx); st.State != "created" || st.Pid == 0 {
		t.Fatalf("state before start = %+v", st)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode != 3 || st.State != "exited" || st.ExitedAt.IsZero() || st.StartedAt.IsZero() {
		t.Fatalf("status = %+v, want exit 3", st)
	}
	got := readLog(t, s.cfg.LogPath)
	var out, errs string
	for _, e := range got {
		if e.Stream == "stdout" {
			out += e.Log
		} else {
			errs += e.Log
		}
	}
	if out != "hi\n" || errs != "oops\n" {
		t.Fatalf("log stdout=%q stderr=%q", out, errs)
	}
	fst, ok, err := ReadExitFile(s.cfg.Dir)
	if err != nil || !ok || fst.ExitCode != 3 {
		t.Fatalf("exit file = %+v ok=%v err=%v", fst, ok, err)
	}
}

func TestShimAttachMultiplexedWithStdin(t *testing.T) {
	ctx := context.Background()
	_, c := startShim(t, Config{OpenStdin: true, StdinOnce: true}, "/bin/sh", "-c", "cat; echo done >&2")
	conn, br, err := c.Attach(ctx, true, true, true)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	var out, errb bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &errb, br); err != nil {
		t.Fatal(err)
	}
	if out.String() != "hello\n" || errb.String() != "done\n" {
		t.Fatalf("attach stdout=%q stderr=%q", out.String(), errb.String())
	}
	st, err := c.Wait(ctx)
	if err != nil || st.ExitCode != 0 {
		t.Fatalf("wait = %+v, %v", st, err)
	}
}

func TestShimKill(t *testing.T) {
	ctx := context.Background()
	_, c := startShim(t, Config{}, "/bin/sleep", "100")
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(ctx, syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait(ctx)
	if err != nil || st.ExitCode != 128+int(syscall.SIGTERM) {
		t.Fatalf("wait = %+v, %v; want 143", st, err)
	}
	if err := c.Start(ctx); err == nil {
		t.Fatal("start of an exited container succeeded")
	}
}

func TestShimTTY(t *testing.T) {
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		t.Skip("no /dev/ptmx")
	}
	ctx := context.Background()
	_, c := startShim(t, Config{Terminal: true, OpenStdin: true}, "/bin/sh", "-c", "stty size; read x; echo got:$x")
	conn, br, err := c.Attach(ctx, true, true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := c.Resize(ctx, 33, 99); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("abc\r")); err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(br)
	if !strings.Contains(string(all), "33 99") || !strings.Contains(string(all), "got:abc") {
		t.Fatalf("tty output = %q", all)
	}
	if _, err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLogWriterSplitsLongLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log.json")
	l, err := OpenLog(p)
	if err != nil {
		t.Fatal(err)
	}
	w := l.Stream("stdout")
	long := strings.Repeat("x", maxLogLine+10)
	if _, err := w.Write([]byte("a\nb")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("c\n" + long)); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := readLog(t, p)
	if len(got) != 4 || got[0].Log != "a\n" || got[1].Log != "bc\n" || len(got[2].Log) != maxLogLine || got[3].Log != "xxxxxxxxxx" {
		t.Fatalf("entries = %d %+v", len(got), got[:2])
	}
}

func TestShimExec(t *testing.T) {
	ctx := context.Background()
	_, c := startShim(t, Config{}, "/bin/sleep", "100")
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	conn, br, err := c.Exec(ctx, ExecRequest{ID: "e1", Stdin: true, Process: specs.Process{Args: []string{"/bin/sh", "-c", "cat; echo err >&2; exit 7"}}})
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
	st, err := c.ExecState(ctx, "e1")
	if err != nil || st.Running || st.ExitCode != 7 {
		t.Fatalf("exec state = %+v, %v", st, err)
	}
	dst, err := c.ExecDetached(ctx, ExecRequest{ID: "e2", Process: specs.Process{Args: []string{"/bin/true"}}})
	if err != nil || dst.Pid == 0 {
		t.Fatalf("detached exec = %+v, %v", dst, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := c.ExecState(ctx, "e2")
		if err == nil && !st.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("detached exec never finished: %+v %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.ExecState(ctx, "nope"); err == nil {
		t.Fatal("unknown exec has a state")
	}
	_ = c.Kill(ctx, syscall.SIGKILL, false)
}
