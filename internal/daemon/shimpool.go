package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// spareShims is how many idle shims the daemon keeps started. A shim's exec and Go start-up
// (~4 ms) were the largest single cost on the path of `docker run`; a spare has paid it before
// the container is asked for. One spare costs ~3 MiB, so only a couple are kept; a burst of
// starts beyond them falls back to starting shims afresh.
const spareShims = 2

// shimPool holds started shims that wait for a container (`berth shim --pool`): each reads one
// job, its command-line arguments as JSON, from a socket, then runs as if started with them and
// reports on that socket as a fresh shim does on its ready pipe. A spare whose daemon goes away
// reads EOF and exits.
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
	cmd := exec.Command(self, "shim", "--pool")
	cmd.Args[0] = "berth"
	cmd.Dir = root
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = shimEnv()
	if err := cmd.Start(); err != nil {
		ours.Close()
		return nil, fmt.Errorf("start shim: %w", err)
	}
	// The daemon reaps its spares; a spare that took a job is reaped here as well.
	go func() { _ = cmd.Wait() }()
	return &spareShim{cmd: cmd, conn: ours}, nil
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

// poolJob is what a spare shim reads: the arguments a fresh shim gets on its command line
// (internal/cli's shim reads the same shape).
type poolJob struct {
	Args []string `json:"args"`
}

// assign gives the spare its container and waits for its report ("ok" or "error MSG"), like
// launchShim's ready pipe. taken is false when the spare could not even be handed the job (it
// died): the caller then starts a fresh shim. Once the spare has the job, what it reports, or
// its silence, is the answer.
func (s *spareShim) assign(ctx context.Context, args []string) (line string, taken bool, err error) {
	defer s.conn.Close()
	job, err := json.Marshal(poolJob{Args: args})
	if err != nil {
		return "", false, err
	}
	if _, err := s.conn.Write(append(job, '\n')); err != nil {
		_ = s.cmd.Process.Kill()
		return "", false, fmt.Errorf("hand job to spare shim: %w", err)
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
		return r.line, true, r.err
	case <-ctx.Done():
		_ = s.cmd.Process.Kill()
		return "", true, ctx.Err()
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
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
