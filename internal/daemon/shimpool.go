package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/shim"
)

// spareShims is how many idle shims the daemon keeps started. A spare is C from its first
// instruction (cshim.c's spare mode): it costs an exec, and a container's start takes one that
// has paid it. A burst of starts beyond them starts spares afresh.
const spareShims = 2

// shimPool holds spare shims (`berth shim --pool`), each waiting for one container: a job
// (shim.SpareJob) on a socket, with the container the runtime prepared in the daemon
// (linux.Prepared). The spare starts the container's init, becomes its shim and reports on that
// socket as a started shim does on its ready pipe. A spare whose daemon goes away reads EOF and
// exits.
type shimPool struct {
	d *Daemon

	mu     sync.Mutex // guards spare, closed and starting
	spare  []*spareShim
	closed bool
	// starting counts spares being started, so that a burst of takes does not over-fill.
	starting int
	// filling tracks fill goroutines; close waits for them, so that none starts a spare (or
	// makes its directory) once the daemon has shut down.
	filling sync.WaitGroup
}

type spareShim struct {
	cmd  *exec.Cmd
	conn *os.File // our end of the job socket
	// exited is closed once the spare has been reaped.
	exited chan struct{}
}

func newShimPool(d *Daemon) *shimPool { return &shimPool{d: d} }

// refill starts a fill in the background unless the pool is closed.
func (p *shimPool) refill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.filling.Add(1)
	go func() {
		defer p.filling.Done()
		p.fill()
	}()
}

// fill starts spares until the pool holds spareShims of them.
func (p *shimPool) fill() {
	p.mu.Lock()
	n := spareShims - len(p.spare) - p.starting
	if p.closed || n <= 0 {
		p.mu.Unlock()
		return
	}
	p.starting += n
	p.mu.Unlock()
	for i := range n {
		p.mu.Lock()
		if p.closed {
			p.starting -= n - i
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		s, err := p.start()
		p.mu.Lock()
		p.starting--
		if err == nil && !p.closed {
			p.spare = append(p.spare, s)
			s = nil
		}
		if err != nil {
			// The spares not started are not starting either.
			p.starting -= n - i - 1
		}
		p.mu.Unlock()
		if err != nil {
			p.d.log.Warn("start spare shim", "err", err)
			return
		}
		if s != nil {
			s.discard()
		}
	}
}

func (p *shimPool) start() (*spareShim, error) {
	self := p.d.binary()
	if self == "" {
		return nil, errors.New("cannot find the berth binary")
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "shim-job"), os.NewFile(uintptr(fds[1]), "shim-job")
	defer theirs.Close()
	root := filepath.Join(p.d.cfg.ExecRoot, "shims")
	if err := os.MkdirAll(root, 0o700); err != nil {
		ours.Close()
		return nil, err
	}
	cmd := exec.Command(self, shim.SpareArgs()...)
	cmd.Args[0] = "berth"
	cmd.Dir = root
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = append(shimEnv(), shim.SpareEnv)
	if err := cmd.Start(); err != nil {
		ours.Close()
		return nil, fmt.Errorf("start shim: %w", err)
	}
	s := &spareShim{cmd: cmd, conn: ours, exited: make(chan struct{})}
	// The daemon reaps its spares; a spare that took a job is reaped here as well.
	go func() { _ = cmd.Wait(); close(s.exited) }()
	return s, nil
}

// take returns a spare, or nil when none is ready, and starts a replacement.
func (p *shimPool) take() *spareShim {
	p.mu.Lock()
	var s *spareShim
	if n := len(p.spare); n > 0 && !p.closed {
		s = p.spare[n-1]
		p.spare = p.spare[:n-1]
	}
	p.mu.Unlock()
	p.refill()
	return s
}

// close ends every spare.
func (p *shimPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.filling.Wait()
	p.mu.Lock()
	spare := p.spare
	p.spare = nil
	p.mu.Unlock()
	for _, s := range spare {
		s.discard()
	}
}

func (s *spareShim) discard() {
	_ = s.conn.Close() // the spare reads EOF and exits
	_ = s.cmd.Process.Kill()
}

// kill ends a spare that has a job and waits until it is gone. A SIGKILL takes effect only
// once the spare is back from its system call: until then it may still write its init's PID
// into the cgroup that the caller's Abort is about to empty and remove (whose rmdir would then
// fail, leaving the cgroup behind).
func (s *spareShim) kill() {
	_ = s.cmd.Process.Kill()
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
	}
}

// assign hands the spare its job and waits for its report (see shim.SpareReport). taken is
// false when the spare could not even be handed the job (it died): the caller then starts
// another. Once the spare has the job, what it reports, or its silence, is the answer.
// Once the spare has the job, finish runs while the spare starts the init; the spare moves the
// init into its cgroup only after finish succeeded, and gives up when it failed (its error is
// then the answer).
func (s *spareShim) assign(ctx context.Context, job []byte, finish func() error) (line string, taken bool, err error) {
	defer s.conn.Close()
	if _, err := s.conn.Write(job); err != nil {
		s.kill()
		return "", false, fmt.Errorf("hand job to spare shim: %w", err)
	}
	ferr := finish()
	if ferr != nil {
		// The spare reads EOF instead of the byte: it kills the init it started and reports;
		// its report is awaited below, so that no process of the container outlives the error.
		_ = syscall.Shutdown(int(s.conn.Fd()), syscall.SHUT_WR)
	} else if _, err := s.conn.Write([]byte{1}); err != nil {
		s.kill()
		return "", true, fmt.Errorf("spare shim: %w", err)
	}
	type result struct {
		line string
		err  error
	}
	resc := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(s.conn).ReadString('\n')
		resc <- result{line, err}
	}()
	select {
	case r := <-resc:
		if ferr != nil {
			return "", true, ferr
		}
		return r.line, true, r.err
	case <-ctx.Done():
		s.kill()
		return "", true, ctx.Err()
	case <-time.After(60 * time.Second):
		s.kill()
		return "", true, errors.New("shim did not report within 60s")
	}
}

// shimEnv is a shim's environment. One P keeps an idle shim's memory small: it has little to
// do. No GC until the shim has created the container: its start is on the path of every
// container start.
func shimEnv() []string {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GOMAXPROCS=1", "GOGC=off"}
	// BERTH_INIT=go (the Go container init for every container) reaches the runtime in the shim.
	if v, ok := os.LookupEnv("BERTH_INIT"); ok {
		env = append(env, "BERTH_INIT="+v)
	}
	return env
}
