package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Task is the container a shim sets up. The linux runtime provides one. Implementations must not
// wait for the init: the shim is its parent and reaps it.
type Task interface {
	// Create makes the container with the given stdio and stops it before the user process
	// runs. It returns the pid of the container's init.
	Create(ctx context.Context, io TaskIO) (int, error)
	// Kill signals the init, or every process of the container when all is set; used to undo
	// a create whose handover failed.
	Kill(ctx context.Context, sig syscall.Signal, all bool) error
	// Files returns, once created, the exec fifo the init waits on until start and the cgroup
	// file whose "oom_kill N" line tells whether the OOM killer acted ("" when there is none).
	Files(ctx context.Context) (execFifo, oomCounter string, err error)
}

// TaskIO is the stdio handed to Task.Create.
type TaskIO struct {
	// Terminal asks for a pty; the runtime sends its master end to ConsoleSocket with
	// SCM_RIGHTS, as runc's --console-socket does.
	Terminal      bool
	ConsoleSocket string
	// Stdin, Stdout and Stderr are the child's ends of pipes when Terminal is false. Stdin is
	// nil when the container does not keep stdin open.
	Stdin, Stdout, Stderr *os.File
}

// Config describes one supervised container.
type Config struct {
	ID string
	// Dir is the shim's state directory: shim.sock, exit.json and the console socket.
	Dir string
	// LogPath is the json-file log; empty means no log.
	LogPath   string
	Terminal  bool
	OpenStdin bool
	// StdinOnce closes the container's stdin when the first attached client detaches.
	StdinOnce bool
	// RuntimeRoot is the runtime's state directory, for the helpers the steady state runs.
	RuntimeRoot string
}

// Status is the shim's view of its container, as served on /state and /wait and written to
// the exit file.
type Status struct {
	ID        string    `json:"id"`
	Pid       int       `json:"pid"`
	State     string    `json:"state"` // created, running or exited
	StartedAt time.Time `json:"startedAt,omitzero"`
	ExitCode  int       `json:"exitCode"`
	ExitedAt  time.Time `json:"exitedAt,omitzero"`
	OOMKilled bool      `json:"oomKilled"`
}

// Names of files in the state directory.
const (
	SocketName  = "shim.sock"
	ExitName    = "exit.json"
	consoleName = "console.sock"
)

// envCShim hands the set-up shim to the C steady state (cshim.c; keep in step with
// BERTH_CSHIM_ENV there).
const envCShim = "_BERTH_CSHIM"

// consoleTimeout bounds the wait for the runtime to send a pty master.
const consoleTimeout = 10 * time.Second

// Shim sets up one container and then hands the process over to the C steady state, which
// serves the shim's API until the container exited (see cshim.c).
type Shim struct {
	cfg  Config
	task Task

	listenFd int // the bound, listening shim.sock; -1 before Listen
	pid      int
	// Files the steady state inherits; nil when absent.
	stdout, stderr, stdin, master, log *os.File
}

// New returns a shim for the task; Listen, Create and Handover run it.
func New(cfg Config, task Task) *Shim {
	return &Shim{cfg: cfg, task: task, listenFd: -1}
}

// Listen binds the shim's socket, <Dir>/shim.sock (mode 0600). Bind before Create so that a
// launcher told "created" can connect at once.
func (s *Shim) Listen() error {
	sock := filepath.Join(s.cfg.Dir, SocketName)
	_ = os.Remove(sock)
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: sock}); err != nil {
		_ = unix.Close(fd)
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		_ = unix.Close(fd)
		return fmt.Errorf("chmod %s: %w", sock, err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		_ = unix.Close(fd)
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	s.listenFd = fd
	return nil
}

// Close releases what Listen and Create opened, for a shim that will not hand over.
func (s *Shim) Close() {
	if s.listenFd >= 0 {
		_ = unix.Close(s.listenFd)
		_ = os.Remove(filepath.Join(s.cfg.Dir, SocketName))
		s.listenFd = -1
	}
	for _, f := range []*os.File{s.stdout, s.stderr, s.stdin, s.master, s.log} {
		if f != nil {
			_ = f.Close()
		}
	}
}

// Create makes the container and its stdio plumbing; after it returns nil the container is in
// the created state.
func (s *Shim) Create(ctx context.Context) error {
	// The shim reaps the container's init and anything reparented to it (exec processes).
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set child subreaper: %w", err)
	}
	if s.cfg.LogPath != "" {
		f, err := os.OpenFile(s.cfg.LogPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("open log %s: %w", s.cfg.LogPath, err)
		}
		s.log = f
	}
	var (
		tio              TaskIO
		closeAfterCreate []*os.File
		consoleL         *os.File
	)
	defer func() {
		for _, f := range closeAfterCreate {
			_ = f.Close()
		}
	}()
	if s.cfg.Terminal {
		sock := filepath.Join(s.cfg.Dir, consoleName)
		_ = os.Remove(sock)
		l, err := listenConsole(sock)
		if err != nil {
			return err
		}
		consoleL = l
		defer func() { _ = consoleL.Close(); _ = os.Remove(sock) }()
		tio = TaskIO{Terminal: true, ConsoleSocket: sock}
	} else {
		outR, outW, err := os.Pipe()
		if err != nil {
			return fmt.Errorf("stdout pipe: %w", err)
		}
		s.stdout = outR
		closeAfterCreate = append(closeAfterCreate, outW)
		errR, errW, err := os.Pipe()
		if err != nil {
			return fmt.Errorf("stderr pipe: %w", err)
		}
		s.stderr = errR
		closeAfterCreate = append(closeAfterCreate, errW)
		tio.Stdout, tio.Stderr = outW, errW
		if s.cfg.OpenStdin {
			inR, inW, err := os.Pipe()
			if err != nil {
				return fmt.Errorf("stdin pipe: %w", err)
			}
			s.stdin = inW
			closeAfterCreate = append(closeAfterCreate, inR)
			tio.Stdin = inR
		} else {
			devnull, err := os.Open(os.DevNull)
			if err != nil {
				return err
			}
			closeAfterCreate = append(closeAfterCreate, devnull)
			tio.Stdin = devnull
		}
	}
	type recvResult struct {
		f   *os.File
		err error
	}
	recv := make(chan recvResult, 1)
	if consoleL != nil {
		go func() {
			f, err := receiveConsole(consoleL)
			recv <- recvResult{f, err}
		}()
	}
	pid, err := s.task.Create(ctx, tio)
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	s.pid = pid
	if consoleL != nil {
		select {
		case r := <-recv:
			if r.err != nil {
				_ = s.task.Kill(ctx, syscall.SIGKILL, true)
				return fmt.Errorf("receive console: %w", r.err)
			}
			s.master = r.f
		case <-time.After(consoleTimeout):
			_ = s.task.Kill(ctx, syscall.SIGKILL, true)
			return errors.New("runtime did not send the console within 10s")
		}
	}
	return nil
}

// Handover re-executes the binary as the C steady state, which inherits the socket, the stdio,
// the log and the children, and reports "ok" on ready (the launcher's pipe) once it serves.
// argv is its command line: the shim's own, so that ps and pgrep show the shim as before.
// Handover returns only on failure; the caller then undoes the create.
func (s *Shim) Handover(ctx context.Context, ready *os.File, argv []string) error {
	if !cShimBuilt {
		return errors.New("this berth was built without cgo, which the shim's steady state needs")
	}
	fifo, oom, err := s.task.Files(ctx)
	if err != nil {
		return fmt.Errorf("container files: %w", err)
	}
	kv := []string{
		"ls=" + strconv.Itoa(s.listenFd),
		"pid=" + strconv.Itoa(s.pid),
		"id=" + url.PathEscape(s.cfg.ID),
		"dir=" + url.PathEscape(s.cfg.Dir),
		"rr=" + url.PathEscape(s.cfg.RuntimeRoot),
		"fifo=" + url.PathEscape(fifo),
		"oom=" + url.PathEscape(oom),
	}
	keep := []int{s.listenFd}
	add := func(key string, f *os.File) {
		if f == nil {
			return
		}
		fd := int(f.Fd())
		keep = append(keep, fd)
		kv = append(kv, key+"="+strconv.Itoa(fd))
	}
	add("out", s.stdout)
	add("err", s.stderr)
	add("in", s.stdin)
	add("pty", s.master)
	add("log", s.log)
	add("ready", ready)
	if s.cfg.Terminal {
		kv = append(kv, "tty=1")
	}
	if s.cfg.StdinOnce {
		kv = append(kv, "once=1")
	}
	for _, fd := range keep {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("keep descriptor %d: %w", fd, err)
		}
	}
	env := []string{envCShim + "=" + strings.Join(kv, ";")}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, envCShim+"=") {
			env = append(env, e)
		}
	}
	err = unix.Exec("/proc/self/exe", argv, env)
	runtime.KeepAlive(s)
	runtime.KeepAlive(ready)
	return fmt.Errorf("re-execute the shim: %w", err)
}

// ReadExitFile reads the exit status a shim recorded in dir; ok is false if it has none.
func ReadExitFile(dir string) (st Status, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, ExitName))
	if errors.Is(err, os.ErrNotExist) {
		return Status{}, false, nil
	}
	if err != nil {
		return Status{}, false, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return Status{}, false, fmt.Errorf("exit file in %s: %w", dir, err)
	}
	return st, true, nil
}
