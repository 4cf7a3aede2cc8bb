package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/fsutil"
	"golang.org/x/sys/unix"
)

// Task is the container process a shim supervises. The linux runtime provides one; tests use a
// plain process. Implementations must not wait for the process: the shim is its parent and
// reaps it.
type Task interface {
	// Create makes the container with the given stdio and stops it before the user process
	// runs. It returns the pid of the container's init.
	Create(ctx context.Context, io TaskIO) (int, error)
	// Start releases the created process.
	Start(ctx context.Context) error
	// Kill signals the init, or every process of the container when all is set.
	Kill(ctx context.Context, sig syscall.Signal, all bool) error
	// OOMKilled reports whether the kernel OOM killer acted on the container; asked once,
	// after the init exited and before Delete.
	OOMKilled(ctx context.Context) bool
	// Delete releases what the runtime holds for the container (cgroup, state) after exit.
	Delete(ctx context.Context) error
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
	Logger    *slog.Logger
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

// drainTimeout bounds how long the shim forwards output after the init exited; a process that
// escaped the container's pid namespace could otherwise hold the pipes open forever.
const drainTimeout = 2 * time.Second

// Shim supervises one container.
type Shim struct {
	cfg  Config
	task Task
	log  *slog.Logger

	out *broadcaster

	mu      sync.Mutex // guards status, stdin, attached, and resizer
	status  Status
	stdin   io.WriteCloser // container's stdin, nil when closed or absent
	console *os.File       // pty master when Terminal

	exited    chan struct{} // closed once status holds the exit
	persisted chan struct{} // closed once the exit file is durable (or failed to be)

	execs        *execTable
	execConsoles map[string]*os.File // exec ID -> pty master, guarded by mu

	bufs sync.Pool // *[]byte of pumpBufSize, for the output pumps
}

// New returns a shim for the task; Run starts it.
func New(cfg Config, task Task) *Shim {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Shim{
		cfg:    cfg,
		task:   task,
		log:    cfg.Logger.With("container", cfg.ID),
		out:    newBroadcaster(),
		status: Status{ID: cfg.ID, State: "created"},
		exited: make(chan struct{}),
		execs:  newExecTable(),

		persisted: make(chan struct{}),

		execConsoles: map[string]*os.File{},
		bufs:         sync.Pool{New: func() any { b := make([]byte, pumpBufSize); return &b }},
	}
}

// Create makes the container and its stdio plumbing; after it returns nil the container is in
// the created state. ready is the point where a launcher learns create succeeded.
func (s *Shim) Create(ctx context.Context) error {
	// The shim reaps the container's init and anything reparented to it.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set child subreaper: %w", err)
	}
	var logw *LogWriter
	if s.cfg.LogPath != "" {
		var err error
		if logw, err = OpenLog(s.cfg.LogPath); err != nil {
			return err
		}
	}
	var (
		tio     TaskIO
		readers []struct {
			r      *os.File
			stream byte
		}
		closeAfterCreate []*os.File
	)
	var consoleL *os.File
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
		errR, errW, err := os.Pipe()
		if err != nil {
			return fmt.Errorf("stderr pipe: %w", err)
		}
		tio.Stdout, tio.Stderr = outW, errW
		closeAfterCreate = append(closeAfterCreate, outW, errW)
		readers = append(readers, struct {
			r      *os.File
			stream byte
		}{outR, streamStdout}, struct {
			r      *os.File
			stream byte
		}{errR, streamStderr})
		if s.cfg.OpenStdin {
			inR, inW, err := os.Pipe()
			if err != nil {
				return fmt.Errorf("stdin pipe: %w", err)
			}
			tio.Stdin = inR
			closeAfterCreate = append(closeAfterCreate, inR)
			s.stdin = inW
		} else {
			devnull, err := os.Open(os.DevNull)
			if err != nil {
				return err
			}
			tio.Stdin = devnull
			closeAfterCreate = append(closeAfterCreate, devnull)
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
	for _, f := range closeAfterCreate {
		_ = f.Close()
	}
	if err != nil {
		for _, r := range readers {
			_ = r.r.Close()
		}
		if logw != nil {
			_ = logw.Close()
		}
		return fmt.Errorf("create container: %w", err)
	}
	if consoleL != nil {
		select {
		case r := <-recv:
			if r.err != nil {
				_ = s.task.Kill(ctx, syscall.SIGKILL, true)
				return fmt.Errorf("receive console: %w", r.err)
			}
			s.console = r.f
			s.stdin = r.f
			readers = append(readers, struct {
				r      *os.File
				stream byte
			}{r.f, streamStdout})
		case <-time.After(10 * time.Second):
			_ = s.task.Kill(ctx, syscall.SIGKILL, true)
			return errors.New("runtime did not send the console within 10s")
		}
	}
	s.mu.Lock()
	s.status.Pid = pid
	s.mu.Unlock()

	var copiers sync.WaitGroup
	for _, r := range readers {
		copiers.Add(1)
		go func() {
			defer copiers.Done()
			var lw *StreamWriter
			if logw != nil {
				name := "stdout"
				if r.stream == streamStderr {
					name = "stderr"
				}
				lw = logw.Stream(name)
			}
			s.pump(r.r, r.stream, lw)
		}()
	}
	go s.reap(ctx, pid, &copiers, logw)
	return nil
}

// pumpBufSize is the most a pump reads at once.
const pumpBufSize = 32 * 1024

// pump copies one output stream to the log and to attached clients until EOF.
func (s *Shim) pump(r *os.File, stream byte, lw *StreamWriter) {
	for {
		buf, n, err := s.readPooled(r)
		if n > 0 {
			if lw != nil {
				if _, werr := lw.Write((*buf)[:n]); werr != nil {
					s.log.Warn("write log", "err", werr)
				}
			}
			s.out.send(stream, (*buf)[:n])
		}
		if buf != nil {
			s.bufs.Put(buf)
		}
		if err != nil {
			// EIO is how a pty master reports that the slave side closed.
			break
		}
	}
	if lw != nil {
		_ = lw.Flush()
	}
	if r != s.console {
		_ = r.Close()
	}
}

// readPooled reads once from r. For a pollable r (the output pipes) it takes a buffer only once
// r is readable, so that a quiet container's streams hold no buffer while they wait: most of
// an idle shim's memory is what it holds while blocked. EOF is returned as io.EOF.
func (s *Shim) readPooled(r *os.File) (buf *[]byte, n int, err error) {
	rc, err := r.SyscallConn()
	if err != nil {
		return nil, 0, err
	}
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		buf = s.bufs.Get().(*[]byte)
		for {
			n, rerr = unix.Read(int(fd), *buf)
			if !errors.Is(rerr, unix.EINTR) {
				break
			}
		}
		if errors.Is(rerr, unix.EAGAIN) {
			s.bufs.Put(buf)
			buf = nil
			return false // wait until readable
		}
		return true
	})
	if err == nil {
		err = rerr
	}
	if n < 0 {
		n = 0
	}
	if err == nil && n == 0 {
		err = io.EOF
	}
	return buf, n, err
}

// reap waits for the init to exit, then records the status.
func (s *Shim) reap(ctx context.Context, pid int, copiers *sync.WaitGroup, logw *LogWriter) {
	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc, syscall.SIGCHLD)
	defer signal.Stop(sigc)
	var ws unix.WaitStatus
	for {
		// Reap everything that is ready; only the init's status matters.
		done := false
		for {
			wpid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err != nil || wpid <= 0 {
				if errors.Is(err, unix.ECHILD) {
					// Not our child (should not happen); fall back to polling its existence.
					if unix.Kill(pid, 0) != nil {
						done = true
					}
				}
				break
			}
			if wpid == pid {
				done = true
				break
			}
			s.execs.exited(wpid, exitCode(ws))
		}
		if done {
			break
		}
		select {
		case <-sigc:
		case <-time.After(time.Second):
		}
	}
	code := exitCode(ws)
	// The init's death killed every process in its pid namespace; reap what is left.
	for {
		var ews unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ews, unix.WNOHANG, nil)
		if err != nil || wpid <= 0 {
			break
		}
		s.execs.exited(wpid, exitCode(ews))
	}
	s.execs.failAll(137)
	// Let output drain, but not forever.
	drained := make(chan struct{})
	go func() { copiers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainTimeout):
		s.log.Warn("container output still open after exit; closing it")
	}
	if logw != nil {
		_ = logw.Close()
	}
	oom := s.task.OOMKilled(ctx)
	if err := s.task.Delete(ctx); err != nil {
		s.log.Warn("delete container from runtime", "err", err)
	}
	s.mu.Lock()
	s.status.State = "exited"
	s.status.ExitCode = code
	s.status.ExitedAt = time.Now().UTC()
	s.status.OOMKilled = oom
	st := s.status
	if s.stdin != nil {
		_ = s.stdin.Close()
		s.stdin = nil
	}
	s.mu.Unlock()
	// The exit file is renamed into place before anyone hears of the exit, and made durable
	// right after: waiters (the daemon's /wait) need not wait for the disk, and the shim does
	// not end before the fsync (Serve waits on persisted).
	var tmp *os.File
	if b, err := json.Marshal(st); err == nil {
		if tmp, err = writeExitFile(filepath.Join(s.cfg.Dir, ExitName), b); err != nil {
			s.log.Error("write exit status", "err", err)
		}
	}
	s.out.close()
	close(s.exited)
	if tmp != nil {
		if err := tmp.Sync(); err != nil {
			s.log.Error("sync exit status", "err", err)
		}
		_ = tmp.Close()
		if err := fsutil.SyncDir(s.cfg.Dir); err != nil {
			s.log.Error("sync exit status", "err", err)
		}
	}
	close(s.persisted)
}

// writeExitFile writes data to path through a renamed temporary file and returns the file,
// still open, for the caller to fsync.
func writeExitFile(path string, data []byte) (*os.File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// exitCode is a shell's view of a wait status: the exit code, or 128+signal.
func exitCode(ws unix.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return 0
}

func timeAfterDrain() <-chan time.Time { return time.After(drainTimeout) }

func resizePty(f *os.File, h, w uint16) error {
	return unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: h, Col: w})
}

// Start releases the container's process.
func (s *Shim) Start(ctx context.Context) error {
	s.mu.Lock()
	state := s.status.State
	s.mu.Unlock()
	if state != "created" {
		return fmt.Errorf("container %s is %s, not created", s.cfg.ID, state)
	}
	if err := s.task.Start(ctx); err != nil {
		return fmt.Errorf("start container: %w", err)
	}
	s.mu.Lock()
	if s.status.State == "created" {
		s.status.State = "running"
		s.status.StartedAt = time.Now().UTC()
	}
	s.mu.Unlock()
	return nil
}

// Kill signals the container.
func (s *Shim) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	select {
	case <-s.exited:
		return nil
	default:
	}
	return s.task.Kill(ctx, sig, all)
}

// Status returns the current status.
func (s *Shim) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Wait blocks until the container exited or ctx ends.
func (s *Shim) Wait(ctx context.Context) (Status, error) {
	select {
	case <-s.exited:
		return s.Status(), nil
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
}

// Exited is closed when the container has exited and its status is recorded.
func (s *Shim) Exited() <-chan struct{} { return s.exited }

// Resize sets the pty's window size.
func (s *Shim) Resize(height, width uint16) error {
	s.mu.Lock()
	c := s.console
	s.mu.Unlock()
	if c == nil {
		return errors.New("container has no TTY")
	}
	return resizePty(c, height, width)
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
