package shim

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// HelperRuntime is what `berth shim-helper` needs of the runtime.
type HelperRuntime interface {
	Exec(ctx context.Context, id string, p specs.Process, tio TaskIO) (int, error)
	KillAll(ctx context.Context, id string, sig syscall.Signal) error
	// DeleteInit deletes container id if its init is still pid.
	DeleteInit(ctx context.Context, id string, pid int) error
}

// helperAnswerFd is where the C steady state waits for a helper's one answer: a SOCK_SEQPACKET
// socket taking "ok[ PID]" or "error MSG", and for a TTY exec the pty master with SCM_RIGHTS.
const helperAnswerFd = 3

// helperProcessFd holds an exec's process (the specs.Process JSON the client sent).
const helperProcessFd = 4

// helperLogFd is the shim's own stderr, for an exec helper whose stderr is the process's.
const helperLogFd = 5

// HelperMain is `berth shim-helper exec|kill|delete`, run by the C steady state for the work
// that needs the runtime. It answers on fd 3 and returns the exit code.
func HelperMain(args []string, rtFor func(root string, logTo *os.File) HelperRuntime) int {
	answer := func(msg string, rights []byte) int {
		if err := unix.Sendmsg(helperAnswerFd, []byte(msg), rights, nil, 0); err != nil {
			fmt.Fprintln(os.Stderr, "berth shim-helper: answer:", err)
			return 1
		}
		return 0
	}
	fail := func(err error) int {
		msg := err.Error()
		if len(msg) > 4000 {
			msg = msg[:4000]
		}
		_ = answer("error "+msg, nil)
		return 1
	}
	// Our own descriptors must not reach the processes the runtime starts.
	for _, fd := range []int{helperAnswerFd, helperProcessFd, helperLogFd} {
		unix.CloseOnExec(fd)
	}
	if len(args) == 0 {
		return fail(errors.New("shim-helper: no command"))
	}
	cmd := args[0]
	fs := flag.NewFlagSet("shim-helper", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	root := fs.String("root", "", "runtime state directory")
	id := fs.String("id", "", "container ID")
	sig := fs.Int("signal", 0, "signal for kill")
	pid := fs.Int("pid", 0, "init PID for delete")
	console := fs.String("console", "", "console socket path for a TTY exec")
	detach := fs.Bool("detach", false, "exec with stdio on /dev/null")
	if err := fs.Parse(args[1:]); err != nil {
		return fail(fmt.Errorf("shim-helper: %w", err))
	}
	if *root == "" || *id == "" {
		return fail(errors.New("shim-helper: --root and --id are required"))
	}
	logTo := os.Stderr
	if cmd == "exec" {
		logTo = os.NewFile(helperLogFd, "shim-log")
	}
	rt := rtFor(*root, logTo)
	ctx := context.Background()
	switch cmd {
	case "kill":
		if err := rt.KillAll(ctx, *id, syscall.Signal(*sig)); err != nil {
			return fail(err)
		}
		return answer("ok", nil)
	case "delete":
		if err := rt.DeleteInit(ctx, *id, *pid); err != nil {
			return fail(err)
		}
		return answer("ok", nil)
	case "exec":
		pid, master, err := helperExec(ctx, rt, *id, *console, *detach)
		if err != nil {
			return fail(err)
		}
		var rights []byte
		if master != nil {
			defer master.Close()
			rights = unix.UnixRights(int(master.Fd()))
		}
		return answer("ok "+strconv.Itoa(pid), rights)
	}
	return fail(fmt.Errorf("shim-helper: unknown command %q", cmd))
}

func helperExec(ctx context.Context, rt HelperRuntime, id, console string, detach bool) (int, *os.File, error) {
	pf := os.NewFile(helperProcessFd, "process")
	b, err := io.ReadAll(io.LimitReader(pf, 1<<20))
	_ = pf.Close()
	if err != nil {
		return 0, nil, fmt.Errorf("read process: %w", err)
	}
	var p specs.Process
	if err := json.Unmarshal(b, &p); err != nil {
		return 0, nil, fmt.Errorf("invalid exec request: %w", err)
	}
	if detach {
		p.Terminal = false
	}
	// The process's stdio is ours: pipes of the shim, or /dev/null.
	tio := TaskIO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	if !p.Terminal {
		pid, err := rt.Exec(ctx, id, p, tio)
		return pid, nil, err
	}
	if console == "" {
		return 0, nil, errors.New("a TTY exec needs a console socket")
	}
	_ = os.Remove(console)
	l, err := listenConsole(console)
	if err != nil {
		return 0, nil, err
	}
	defer os.Remove(console)
	type recv struct {
		f   *os.File
		err error
	}
	recvc := make(chan recv, 1)
	go func() { f, err := receiveConsole(l); recvc <- recv{f, err} }()
	pid, err := rt.Exec(ctx, id, p, TaskIO{Terminal: true, ConsoleSocket: console})
	if err != nil {
		_ = l.Close()
		return 0, nil, err
	}
	select {
	case r := <-recvc:
		_ = l.Close()
		if r.err != nil {
			return 0, nil, fmt.Errorf("exec console: %w", r.err)
		}
		return pid, r.f, nil
	case <-time.After(consoleTimeout):
		_ = l.Close()
		return 0, nil, errors.New("exec console: the runtime did not send the pty master within 10s")
	}
}
