package shim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ExecTask is a Task that can also run extra processes in the container (docker exec).
type ExecTask interface {
	Exec(ctx context.Context, p specs.Process, tio TaskIO) (int, error)
}

// ExecRequest is the body of POST /exec.
type ExecRequest struct {
	ID      string        `json:"id"`
	Process specs.Process `json:"process"`
	Stdin   bool          `json:"stdin"`
	// Detach runs the process with its stdio on /dev/null and answers at once.
	Detach bool `json:"detach"`
}

// ExecStatus is the state of an exec process, served on /exec/state.
type ExecStatus struct {
	ID       string `json:"id"`
	Pid      int    `json:"pid"`
	Running  bool   `json:"running"`
	ExitCode int    `json:"exitCode"`
}

// maxExecRecords bounds how many finished exec statuses the shim keeps.
const maxExecRecords = 256

// execTable tracks exec processes: the reaper reports exits by PID.
type execTable struct {
	mu     sync.Mutex // guards all fields
	byID   map[string]*execProc
	byPid  map[int]*execProc
	early  map[int]int // exits reaped before their PID was registered
	finish []string    // finished IDs, oldest first, for trimming
}

type execProc struct {
	status ExecStatus
	done   chan struct{}
}

func newExecTable() *execTable {
	return &execTable{byID: map[string]*execProc{}, byPid: map[int]*execProc{}, early: map[int]int{}}
}

// exited records a reaped PID; it returns false when the PID is no exec of ours (yet).
func (t *execTable) exited(pid, code int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.byPid[pid]
	if !ok {
		if len(t.early) < 1024 {
			t.early[pid] = code
		}
		return
	}
	t.finishLocked(p, code)
}

func (t *execTable) finishLocked(p *execProc, code int) {
	delete(t.byPid, p.status.Pid)
	p.status.Running = false
	p.status.ExitCode = code
	close(p.done)
	t.finish = append(t.finish, p.status.ID)
	for len(t.finish) > maxExecRecords {
		delete(t.byID, t.finish[0])
		t.finish = t.finish[1:]
	}
}

func (t *execTable) register(id string, pid int) *execProc {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := &execProc{status: ExecStatus{ID: id, Pid: pid, Running: true}, done: make(chan struct{})}
	t.byID[id] = p
	t.byPid[pid] = p
	if code, ok := t.early[pid]; ok {
		delete(t.early, pid)
		t.finishLocked(p, code)
	}
	return p
}

func (t *execTable) get(id string) (ExecStatus, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.byID[id]
	if !ok {
		return ExecStatus{}, false
	}
	return p.status, true
}

// failAll ends every running exec when the container is gone.
func (t *execTable) failAll(code int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.byPid {
		t.finishLocked(p, code)
	}
}

func (s *Shim) serveExecState(w http.ResponseWriter, r *http.Request) {
	st, ok := s.execs.get(r.URL.Query().Get("id"))
	if !ok {
		http.Error(w, "no such exec", http.StatusNotFound)
		return
	}
	writeJSON(w, st)
}

// serveExec starts an exec process and, unless detached, streams its stdio on the hijacked
// connection: raw with a TTY, multiplexed without. Output ends when the process exits.
func (s *Shim) serveExec(w http.ResponseWriter, r *http.Request) {
	et, ok := s.task.(ExecTask)
	if !ok {
		http.Error(w, "this runtime cannot exec", http.StatusNotImplemented)
		return
	}
	select {
	case <-s.exited:
		http.Error(w, "container is not running", http.StatusConflict)
		return
	default:
	}
	var req ExecRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || req.ID == "" {
		http.Error(w, "invalid exec request", http.StatusBadRequest)
		return
	}
	tty := req.Process.Terminal
	var (
		tio        TaskIO
		outR, errR *os.File
		inW        *os.File
		closeAfter []*os.File
		consoleL   *os.File
	)
	cleanup := func() {
		for _, f := range closeAfter {
			_ = f.Close()
		}
	}
	if req.Detach {
		devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		closeAfter = append(closeAfter, devnull)
		tio = TaskIO{Stdin: devnull, Stdout: devnull, Stderr: devnull}
		req.Process.Terminal = false
		tty = false
	} else if tty {
		// Short name: socket paths are limited to 108 bytes.
		sock := filepath.Join(s.cfg.Dir, "e-"+shortID(req.ID)+".sock")
		_ = os.Remove(sock)
		defer os.Remove(sock)
		l, err := listenConsole(sock)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		consoleL = l
		defer consoleL.Close()
		tio = TaskIO{Terminal: true, ConsoleSocket: sock}
	} else {
		var outW, errW, inR *os.File
		var err error
		if outR, outW, err = os.Pipe(); err == nil {
			errR, errW, err = os.Pipe()
		}
		if err == nil {
			if req.Stdin {
				inR, inW, err = os.Pipe()
			} else {
				inR, err = os.Open(os.DevNull)
			}
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		closeAfter = append(closeAfter, outW, errW, inR)
		tio = TaskIO{Stdin: inR, Stdout: outW, Stderr: errW}
	}
	type recv struct {
		f   *os.File
		err error
	}
	recvc := make(chan recv, 1)
	if consoleL != nil {
		go func() { f, err := receiveConsole(consoleL); recvc <- recv{f, err} }()
	}
	pid, err := et.Exec(r.Context(), req.Process, tio)
	cleanup()
	if err != nil {
		for _, f := range []*os.File{outR, errR, inW} {
			if f != nil {
				_ = f.Close()
			}
		}
		http.Error(w, "exec failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	proc := s.execs.register(req.ID, pid)
	if req.Detach {
		writeJSON(w, proc.status)
		return
	}
	var master *os.File
	if consoleL != nil {
		rc := <-recvc
		if rc.err != nil {
			http.Error(w, "exec console: "+rc.err.Error(), http.StatusInternalServerError)
			return
		}
		master = rc.f
		defer master.Close()
		s.mu.Lock()
		s.execConsoles[req.ID] = master
		s.mu.Unlock()
		defer func() { s.mu.Lock(); delete(s.execConsoles, req.ID); s.mu.Unlock() }()
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = brw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n")
	_ = brw.Flush()
	var wg sync.WaitGroup
	if tty {
		go func() { _, _ = io.Copy(master, brw.Reader) }()
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = io.Copy(conn, master) }()
	} else {
		if inW != nil {
			go func() { _, _ = io.Copy(inW, brw.Reader); _ = inW.Close() }()
		}
		fw := &frameWriter{w: conn}
		for _, p := range []struct {
			f  *os.File
			id byte
		}{{outR, streamStdout}, {errR, streamStderr}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer p.f.Close()
				buf := make([]byte, 32*1024)
				for {
					n, err := p.f.Read(buf)
					if n > 0 {
						if werr := fw.writeFrame(p.id, buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}
	// Output ends at the process's exit (a pty master reports EIO then); wait for the exit too.
	outDone := make(chan struct{})
	go func() { wg.Wait(); close(outDone) }()
	select {
	case <-proc.done:
		select {
		case <-outDone:
		case <-timeAfterDrain():
		}
	case <-outDone:
		<-proc.done
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// ExecResize sets the window size of an exec process's pty.
func (s *Shim) execResize(id string, h, w uint16) error {
	s.mu.Lock()
	m := s.execConsoles[id]
	s.mu.Unlock()
	if m == nil {
		return errors.New("exec has no TTY")
	}
	return resizePty(m, h, w)
}

// Exec starts a process through the shim and returns a connection carrying its stdio (raw
// with a TTY, multiplexed without) until it exits.
func (c *Client) Exec(ctx context.Context, req ExecRequest) (net.Conn, *bufio.Reader, error) {
	req.Detach = false
	b, err := json.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	return c.hijack(ctx, "/exec", nil, b)
}

// ExecDetached starts a process with its stdio on /dev/null.
func (c *Client) ExecDetached(ctx context.Context, req ExecRequest) (ExecStatus, error) {
	req.Detach = true
	b, err := json.Marshal(req)
	if err != nil {
		return ExecStatus{}, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://shim/exec", bytes.NewReader(b))
	if err != nil {
		return ExecStatus{}, err
	}
	resp, err := c.http.Do(hreq)
	if err != nil {
		return ExecStatus{}, fmt.Errorf("shim exec: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return ExecStatus{}, fmt.Errorf("shim exec: %s", bytes.TrimSpace(msg))
	}
	var st ExecStatus
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// ExecState returns an exec process's status.
func (c *Client) ExecState(ctx context.Context, id string) (ExecStatus, error) {
	var st ExecStatus
	err := c.do(ctx, http.MethodGet, "/exec/state", map[string][]string{"id": {id}}, &st)
	return st, err
}

// ExecResize sets an exec's TTY size.
func (c *Client) ExecResize(ctx context.Context, id string, h, w uint16) error {
	q := map[string][]string{"id": {id}, "h": {fmt.Sprint(h)}, "w": {fmt.Sprint(w)}}
	return c.do(ctx, http.MethodPost, "/exec/resize", q, nil)
}
