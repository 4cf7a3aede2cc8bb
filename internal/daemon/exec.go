package daemon

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/berth-dev/berth/internal/api"
	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/shim"
	"github.com/containerd/errdefs"
	mcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// execRec is an exec instance. Docker keeps them in memory only; so does berth.
type execRec struct {
	mu       sync.Mutex // guards the fields below
	id       string
	ctrID    string
	req      mcontainer.ExecCreateRequest
	running  bool
	started  bool
	exitCode *int
	pid      int
}

// execIndex holds exec instances by ID.
type execIndex struct {
	mu   sync.Mutex // guards m
	m    map[string]*execRec
	last []string // oldest first, to bound memory
}

func (x *execIndex) add(e *execRec) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.m == nil {
		x.m = map[string]*execRec{}
	}
	x.m[e.id] = e
	x.last = append(x.last, e.id)
	for len(x.last) > 1024 {
		delete(x.m, x.last[0])
		x.last = x.last[1:]
	}
}

func (x *execIndex) get(id string) (*execRec, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e, ok := x.m[id]; ok {
		return e, nil
	}
	return nil, errdefs.ErrNotFound.WithMessage("No such exec instance: " + id)
}

// ExecCreate registers a process to run in a running container.
func (d *Daemon) ExecCreate(ctx context.Context, ref string, req mcontainer.ExecCreateRequest) (string, error) {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return "", err
	}
	if len(req.Cmd) == 0 {
		return "", errdefs.ErrInvalidArgument.WithMessage("no exec command specified")
	}
	c.mu.Lock()
	running := c.running()
	paused := c.rec.State.Status == mcontainer.StatePaused
	id := c.rec.ID
	c.mu.Unlock()
	if !running {
		return "", conflict(fmt.Sprintf("container %s is not running", id))
	}
	if paused {
		return "", conflict(fmt.Sprintf("container %s is paused, unpause the container before exec", id))
	}
	e := &execRec{id: newID(), ctrID: id, req: req}
	d.execs.add(e)
	attrs := ctrAttrs(&c.rec)
	attrs["execID"] = e.id
	d.events.Publish(events.ContainerEventType, events.Action("exec_create: "+strings.Join(req.Cmd, " ")), id, attrs)
	return e.id, nil
}

// execProcess builds the exec's OCI process from the container's and the request's settings.
func (d *Daemon) execProcess(c *ctr, req mcontainer.ExecCreateRequest) (specs.Process, error) {
	c.mu.Lock()
	rec := c.rec
	c.mu.Unlock()
	userSpec := rec.Config.User
	if req.User != "" {
		userSpec = req.User
	}
	u, err := resolveUser(d.rootfsDir(rec.ID), userSpec, rec.HostConfig.GroupAdd)
	if err != nil {
		return specs.Process{}, invalid(err)
	}
	caps, err := container.Capabilities(rec.HostConfig.CapAdd, rec.HostConfig.CapDrop, rec.HostConfig.Privileged || req.Privileged)
	if err != nil {
		return specs.Process{}, err
	}
	so, _ := container.ParseSecurityOpts(rec.HostConfig.SecurityOpt)
	env := slices.Clone(rec.Config.Env)
	env = append(env, req.Env...)
	cwd := rec.Config.WorkingDir
	if req.WorkingDir != "" {
		cwd = req.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	p := specs.Process{
		Terminal: req.Tty,
		User:     specs.User{UID: u.UID, GID: u.GID, AdditionalGids: u.AdditionalGids},
		Args:     req.Cmd,
		Env:      env,
		Cwd:      cwd,
		Capabilities: &specs.LinuxCapabilities{
			Bounding: caps, Effective: caps, Permitted: caps,
		},
		NoNewPrivileges: so.NoNewPrivileges && !rec.HostConfig.Privileged && !req.Privileged,
	}
	if !hasEnv(p.Env, "PATH") {
		p.Env = append([]string{"PATH=" + container.DefaultPath}, p.Env...)
	}
	if req.Tty && !hasEnv(p.Env, "TERM") {
		p.Env = append(p.Env, "TERM=xterm")
	}
	if req.ConsoleSize != nil && req.ConsoleSize[0] > 0 {
		p.ConsoleSize = &specs.Box{Height: req.ConsoleSize[0], Width: req.ConsoleSize[1]}
	}
	return p, nil
}

func hasEnv(env []string, k string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, k+"=") {
			return true
		}
	}
	return false
}

// ExecStart runs a registered exec process through the container's shim.
func (d *Daemon) ExecStart(ctx context.Context, execID string, opts api.ExecStartOptions, upgrade api.Upgrade) error {
	e, err := d.execs.get(execID)
	if err != nil {
		return err
	}
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		return conflict(fmt.Sprintf("Error: Exec command %s has already run", execID))
	}
	e.started = true
	req := e.req
	e.mu.Unlock()
	if opts.Tty {
		req.Tty = true
	}
	if opts.ConsoleSize != nil {
		req.ConsoleSize = opts.ConsoleSize
	}
	c, err := d.ctrs.get(e.ctrID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	h := c.shim
	running := c.running()
	c.mu.Unlock()
	if !running {
		return conflict(fmt.Sprintf("container %s is not running", e.ctrID))
	}
	p, err := d.execProcess(c, req)
	if err != nil {
		return err
	}
	sreq := shim.ExecRequest{ID: execID, Process: p, Stdin: req.AttachStdin}
	d.events.Publish(events.ContainerEventType, events.Action("exec_start: "+strings.Join(req.Cmd, " ")), e.ctrID, map[string]string{"execID": execID})
	if opts.Detach {
		st, err := h.client.ExecDetached(ctx, sreq)
		if err != nil {
			return err
		}
		e.mu.Lock()
		e.running, e.pid = true, st.Pid
		e.mu.Unlock()
		return nil
	}
	conn, br, err := h.client.Exec(ctx, sreq)
	if err != nil {
		return err
	}
	defer conn.Close()
	e.mu.Lock()
	e.running = true
	e.mu.Unlock()
	if st, err := h.client.ExecState(ctx, execID); err == nil {
		e.mu.Lock()
		e.pid = st.Pid
		e.mu.Unlock()
	}
	stream, err := upgrade()
	if err != nil {
		return err
	}
	defer stream.Close()
	if req.AttachStdin {
		go func() {
			_, _ = io.Copy(conn, stream)
			if cw, ok := conn.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
		}()
	}
	_, _ = io.Copy(stream, br)
	_ = stream.CloseWrite()
	st, err := h.client.ExecState(context.WithoutCancel(ctx), execID)
	e.mu.Lock()
	e.running = false
	if err == nil {
		code := st.ExitCode
		e.exitCode = &code
	}
	e.mu.Unlock()
	attrs := map[string]string{"execID": execID}
	if err == nil {
		attrs["exitCode"] = fmt.Sprint(st.ExitCode)
	}
	d.events.Publish(events.ContainerEventType, events.ActionExecDie, e.ctrID, attrs)
	return nil
}

// ExecInspect describes an exec process.
func (d *Daemon) ExecInspect(ctx context.Context, execID string) (mcontainer.ExecInspectResponse, error) {
	e, err := d.execs.get(execID)
	if err != nil {
		return mcontainer.ExecInspectResponse{}, err
	}
	e.mu.Lock()
	running, started := e.running, e.started
	e.mu.Unlock()
	if running && e.exitCode == nil {
		// A detached exec finishes without us watching; ask its shim.
		if c, cerr := d.ctrs.get(e.ctrID); cerr == nil {
			c.mu.Lock()
			h := c.shim
			c.mu.Unlock()
			if h != nil {
				if st, serr := h.client.ExecState(ctx, execID); serr == nil && !st.Running {
					e.mu.Lock()
					code := st.ExitCode
					e.exitCode, e.running = &code, false
					e.mu.Unlock()
				}
			}
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = started
	return mcontainer.ExecInspectResponse{
		ID:       e.id,
		Running:  e.running,
		ExitCode: e.exitCode,
		ProcessConfig: &mcontainer.ExecProcessConfig{
			Tty:        e.req.Tty,
			Entrypoint: e.req.Cmd[0],
			Arguments:  e.req.Cmd[1:],
			Privileged: &e.req.Privileged,
			User:       e.req.User,
		},
		OpenStdin:   e.req.AttachStdin,
		OpenStdout:  e.req.AttachStdout,
		OpenStderr:  e.req.AttachStderr,
		ContainerID: e.ctrID,
		Pid:         e.pid,
	}, nil
}

// ExecResize resizes an exec's TTY.
func (d *Daemon) ExecResize(ctx context.Context, execID string, height, width uint16) error {
	e, err := d.execs.get(execID)
	if err != nil {
		return err
	}
	c, err := d.ctrs.get(e.ctrID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	h := c.shim
	c.mu.Unlock()
	if h == nil {
		return conflict("container is not running")
	}
	return h.client.ExecResize(ctx, execID, height, width)
}
