package linux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Runtime manages containers whose state lives under Root (like runc's --root).
type Runtime struct {
	// Root is the state directory; one subdirectory per container.
	Root string
	// InitPath is the binary re-executed as "<InitPath> init" for container init and exec
	// processes; it must call InitMain for that argument. Empty means /proc/self/exe.
	InitPath string
	// Logger receives warnings (clamped rlimits, failed poststart hooks); nil means slog.Default().
	Logger *slog.Logger
	// Host, from ProbeHost, saves the host lookups of every create; nil means look up each time.
	Host *Host
	// GoInit always sets containers up with the Go init, even those the C init would take
	// (cinit.c). So does BERTH_INIT=go in the environment.
	GoInit bool
}

// CreateOpts are the optional inputs of Create.
type CreateOpts struct {
	// ConsoleSocket is a unix socket path; when the process has a terminal, the pty master is
	// sent there with SCM_RIGHTS (required in that case).
	ConsoleSocket string
	// PidFile, if set, receives the init's host PID.
	PidFile string
	// Stdio are the init's stdin, stdout and stderr; nil entries mean the caller's own.
	Stdio [3]*os.File
	// NoNewKeyring keeps the caller's session keyring (runc's --no-new-keyring); by default the
	// container joins a fresh one so it cannot reach keys of the session that created it.
	NoNewKeyring bool
}

// ExecOpts are the optional inputs of Exec; fields mean the same as in CreateOpts.
type ExecOpts struct {
	ConsoleSocket string
	PidFile       string
	Stdio         [3]*os.File
}

// Info is the runc-style detailed state of a container.
type Info struct {
	specs.State
	Rootfs  string    `json:"rootfs"`
	Created time.Time `json:"created"`
	Owner   string    `json:"owner"`
}

func (r *Runtime) log() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

func (r *Runtime) initPath() string {
	if r.InitPath != "" {
		return r.InitPath
	}
	return "/proc/self/exe"
}

// LoadBundleSpec reads and minimally validates <bundle>/config.json.
func LoadBundleSpec(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("bundle %s has no config.json: %w", bundle, errdefs.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("read bundle config: %w", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse %s/config.json: %v: %w", bundle, err, errdefs.ErrInvalidArgument)
	}
	if err := validateSpec(&s); err != nil {
		return nil, err
	}
	return &s, nil
}

func validateSpec(s *specs.Spec) error {
	switch {
	case s.Root == nil || s.Root.Path == "":
		return fmt.Errorf("config: root.path is required: %w", errdefs.ErrInvalidArgument)
	case s.Process == nil:
		// Allowed: the OCI spec lets create succeed without a process; start then fails.
		return nil
	case len(s.Process.Args) == 0:
		return fmt.Errorf("config: process.args must not be empty: %w", errdefs.ErrInvalidArgument)
	case s.Linux == nil:
		return fmt.Errorf("config: linux section is required: %w", errdefs.ErrInvalidArgument)
	case s.Process.Cwd != "" && !filepath.IsAbs(s.Process.Cwd):
		return fmt.Errorf("config: process.cwd %q must be absolute: %w", s.Process.Cwd, errdefs.ErrInvalidArgument)
	}
	for _, m := range s.Mounts {
		if !filepath.IsAbs(m.Destination) {
			return fmt.Errorf("config: mount destination %q must be absolute: %w", m.Destination, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func currentHardLimit(res int) (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(res, &rl); err != nil {
		return 0, err
	}
	return rl.Max, nil
}

func stdio(f [3]*os.File) (in, out, errf *os.File) {
	in, out, errf = f[0], f[1], f[2]
	if in == nil {
		in = os.Stdin
	}
	if out == nil {
		out = os.Stdout
	}
	if errf == nil {
		errf = os.Stderr
	}
	return in, out, errf
}

// child is a started init (or exec) process with the parent's end of the sync socket.
type child struct {
	cmd  *exec.Cmd
	pid  int // host PID of the process that will become the container process
	sync *os.File
	enc  *json.Encoder
	dec  *json.Decoder
	// direct is true when pid is our own child (no intermediate fork).
	direct bool
	// stop detaches the context watcher that closes sync when the caller's context ends.
	stop func() bool
}

func (c *child) close() {
	c.stop()
	c.sync.Close()
}

// startChild starts "<init> init" with the given clone flags, extra files after the sync socket
// and namespaces to join. When forkAfterJoin is set, the C constructor forks once more after
// joining and the grandchild becomes the container process.
func (r *Runtime) startChild(ctx context.Context, cloneFlags uintptr, sp *specs.Spec, join []string, forkAfterJoin, cinit bool, extra []*os.File, io3 [3]*os.File) (*child, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	parentSock := os.NewFile(uintptr(fds[0]), "sync-parent")
	childSock := os.NewFile(uintptr(fds[1]), "sync-child")
	defer childSock.Close()

	cmd := exec.Command(r.initPath(), "init")
	cmd.Args[0] = "berth"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio(io3)
	cmd.ExtraFiles = append([]*os.File{childSock}, extra...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	var pidR, pidW *os.File
	if len(join) > 0 {
		cmd.Env = append(cmd.Env, envNSEnter+"="+strings.Join(join, "\n"))
	}
	if cinit {
		cmd.Env = append(cmd.Env, envCInit+"=1")
	}
	if forkAfterJoin {
		pidR, pidW, err = os.Pipe()
		if err != nil {
			parentSock.Close()
			return nil, fmt.Errorf("pipe: %w", err)
		}
		defer pidR.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, pidW)
		cmd.Env = append(cmd.Env, envNSFork+"="+strconv.Itoa(2+len(cmd.ExtraFiles)))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneFlags}
	if cloneFlags&unix.CLONE_NEWUSER != 0 && sp.Linux != nil {
		for _, m := range sp.Linux.UIDMappings {
			cmd.SysProcAttr.UidMappings = append(cmd.SysProcAttr.UidMappings, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
		}
		for _, m := range sp.Linux.GIDMappings {
			cmd.SysProcAttr.GidMappings = append(cmd.SysProcAttr.GidMappings, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
		}
		cmd.SysProcAttr.GidMappingsEnableSetgroups = true
		// Become the namespace's root once the maps are written; the runtime's own host uid is
		// usually unmapped, and an unmapped process has no capabilities in the namespace.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	if err := cmd.Start(); err != nil {
		parentSock.Close()
		if pidW != nil {
			pidW.Close()
		}
		return nil, fmt.Errorf("start container init: %w", err)
	}
	c := &child{cmd: cmd, pid: cmd.Process.Pid, sync: parentSock, enc: json.NewEncoder(parentSock), dec: json.NewDecoder(parentSock), direct: true}
	if forkAfterJoin {
		pidW.Close()
		b, rerr := io.ReadAll(pidR)
		werr := cmd.Wait()
		if errors.Is(werr, syscall.ECHILD) {
			// A subreaper caller (the shim reaps with wait4(-1)) may have collected the
			// intermediate process first; the PID it sent over the pipe proves it succeeded.
			werr = nil
		}
		pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
		if rerr != nil || werr != nil || perr != nil || pid <= 0 {
			parentSock.Close()
			return nil, fmt.Errorf("join namespaces %v: intermediate process failed: %w", join, errors.Join(rerr, werr, perr))
		}
		c.pid, c.direct = pid, false
	}
	// Closing our end unblocks the read if ctx ends while we wait on the child.
	c.stop = context.AfterFunc(ctx, func() { parentSock.Close() })
	return c, nil
}

// kill ends a child that failed during setup and reaps it when it is ours.
func (c *child) kill() {
	_ = unix.Kill(c.pid, unix.SIGKILL)
	if c.direct {
		_ = c.cmd.Wait()
	}
	c.close()
}

// readMsg reads the next sync message; EOF becomes an error naming the dead child.
func (c *child) readMsg() (syncMsg, error) {
	var m syncMsg
	if err := c.dec.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) {
			return m, io.EOF
		}
		return m, fmt.Errorf("read from container init: %w", err)
	}
	return m, nil
}

// Create sets up container id from the bundle and leaves its init blocked until Start.
func (r *Runtime) Create(ctx context.Context, id, bundle string, opts CreateOpts) error {
	_, err := r.CreatePid(ctx, id, bundle, opts)
	return err
}

// CreatePid is Create that also returns the host PID of the container's init.
func (r *Runtime) CreatePid(ctx context.Context, id, bundle string, opts CreateOpts) (pid int, retErr error) {
	// Moving the init into its cgroup (below) waits for an RCU grace period, ~10 ms, unless
	// another migration happened just before; start one now so that the wait overlaps the setup.
	go primeCgroupMigration()
	c, err := r.begin(id, bundle, nil, opts.ConsoleSocket != "", opts.NoNewKeyring)
	if err != nil {
		return 0, err
	}
	if err := c.saveConfig(); err != nil {
		_ = os.RemoveAll(c.dir)
		return 0, err
	}
	sp := c.sp
	var cg *cgroupState
	var ch *child
	defer func() {
		if retErr == nil {
			return
		}
		if ch != nil {
			ch.kill()
		}
		if cg != nil {
			r.dropCgroup(id, *cg)
		}
		_ = os.RemoveAll(c.dir)
	}()
	fifoFD, err := unix.Open(r.fifoPath(id), unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open exec fifo: %w", err)
	}
	fifoFile := os.NewFile(uintptr(fifoFD), "exec.fifo")
	defer fifoFile.Close()
	extra := []*os.File{fifoFile}
	if opts.ConsoleSocket != "" {
		f, err := dialConsole(opts.ConsoleSocket)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		extra = append(extra, f)
	}
	// The child starts first: its exec (and the Go init's runtime start) overlap the cgroup's
	// creation, and it does nothing before it has its config, which it gets once it is in the
	// cgroup. The C init gets its program at once and mounts the rootfs while the cgroup is
	// made; it waits for the byte below before anything that needs the cgroup.
	ch, err = r.startChild(ctx, c.plan.cloneFlags, sp, c.plan.join, c.plan.joinPID, c.cinit, extra, opts.Stdio)
	if err != nil {
		return 0, err
	}
	if c.cinit {
		if _, err := ch.sync.Write(c.prog); err != nil {
			return 0, fmt.Errorf("send config to container init: %w", err)
		}
	}
	if err := c.makeCgroup(); err != nil {
		return 0, err
	}
	cg = &c.cplan.state
	if err := cg.addProc(ch.pid); err != nil {
		return 0, fmt.Errorf("join cgroup: %w", err)
	}
	if c.cinit {
		// An init that failed before waiting for this byte has its error on the socket
		// already: the loop below reads it (or EOF), so a failed write is not the error.
		_, _ = ch.sync.Write([]byte{1})
	} else if err := ch.enc.Encode(c.cfg); err != nil {
		return 0, fmt.Errorf("send config to container init: %w", err)
	}
	// runtime-tools (and runc) report "created" to prestart/createRuntime hooks.
	hookState := specs.State{Version: specs.Version, ID: id, Status: specs.StateCreated, Pid: ch.pid, Bundle: c.bundle, Annotations: sp.Annotations}
	for done := false; !done; {
		m, err := ch.readMsg()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, fmt.Errorf("container init exited during setup")
			}
			return 0, err
		}
		switch m.Type {
		case msgHooks:
			var herr error
			if sp.Hooks != nil {
				//lint:ignore SA1019 Prestart is deprecated but still part of the spec, and runc honours it.
				herr = runHooks(ctx, append(append([]specs.Hook{}, sp.Hooks.Prestart...), sp.Hooks.CreateRuntime...), hookState)
			}
			if herr != nil {
				return 0, fmt.Errorf("prestart/createRuntime hook: %w", herr)
			}
			if err := ch.enc.Encode(syncMsg{Type: msgContinue}); err != nil {
				return 0, fmt.Errorf("sync with container init: %w", err)
			}
		case msgReady:
			done = true
		case msgError:
			return 0, fmt.Errorf("container init: %s", m.Error)
		default:
			return 0, fmt.Errorf("container init sent unknown message %q", m.Type)
		}
	}
	start, _, err := procStartTime(ch.pid)
	if err != nil {
		return 0, fmt.Errorf("read init start time: %w", err)
	}
	st := c.state()
	st.Pid, st.StartTime = ch.pid, start
	if err := r.save(st); err != nil {
		return 0, err
	}
	if opts.PidFile != "" {
		if err := writePidFile(opts.PidFile, ch.pid); err != nil {
			return 0, err
		}
	}
	ch.close()
	if ch.direct {
		// The caller (a shim, or nobody for `berth oci create`) reaps the init by PID.
		_ = ch.cmd.Process.Release()
	}
	pid = ch.pid
	ch = nil
	return pid, nil
}

// creation is a container on its way in: what CreatePid and Prepare work out from the bundle
// before the init starts. Its state directory exists, with config.json and the exec fifo.
type creation struct {
	id, bundle, rootfs, dir string
	sp                      *specs.Spec
	noProcess               bool
	plan                    nsPlan
	cplan                   cgroupPlan
	cfg                     initConfig
	// cinit is true when the C init takes the container, with prog as its program.
	cinit bool
	prog  []byte
}

// begin validates the bundle, or sp when not nil (the bundle's config, which begin may change),
// and makes the container's state directory; on failure it leaves nothing behind.
func (r *Runtime) begin(id, bundle string, sp *specs.Spec, console, noNewKeyring bool) (_ *creation, retErr error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	bundle, err := filepath.Abs(bundle)
	if err != nil {
		return nil, fmt.Errorf("bundle path: %w", err)
	}
	if sp == nil {
		if sp, err = LoadBundleSpec(bundle); err != nil {
			return nil, err
		}
	} else if err := validateSpec(sp); err != nil {
		return nil, err
	}
	rootfs := sp.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundle, rootfs)
	}
	if fi, err := os.Stat(rootfs); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("rootfs %s is not a directory: %w", rootfs, errdefs.ErrInvalidArgument)
	}
	noProcess := sp.Process == nil
	if noProcess {
		sp.Process = &specs.Process{Cwd: "/"}
	}
	plan, err := planNamespaces(sp.Linux.Namespaces)
	if err != nil {
		return nil, err
	}
	// The rootfs is set up in the container's own mount namespace, new or joined by path (as
	// runc does). Without one the mounts would land in the host's namespace: refused.
	newMount := plan.cloneFlags&unix.CLONE_NEWNS != 0 || plan.joinMount
	if !newMount {
		return nil, fmt.Errorf("config: a mount namespace is required: %w", errdefs.ErrInvalidArgument)
	}
	if sp.Process.Terminal && !console {
		return nil, fmt.Errorf("process.terminal is set but no console socket was given: %w", errdefs.ErrInvalidArgument)
	}
	rl, warnings, err := clampRlimits(sp.Process.Rlimits, currentHardLimit)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		r.log().Warn(w, "container", id)
	}
	sp.Process.Rlimits = rl

	if err := os.MkdirAll(r.Root, 0o700); err != nil {
		return nil, fmt.Errorf("create runtime root: %w", err)
	}
	dir := r.dir(id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("container with id %q already exists: %w", id, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("create container state dir: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	// The init gets the seccomp filter compiled, and the spec without the profile.
	initSpec := sp
	var filter *seccompBPF
	if sp.Linux.Seccomp != nil {
		if filter, err = r.seccompFor(sp.Linux.Seccomp); err != nil {
			return nil, err
		}
		cp, lx := *sp, *sp.Linux
		lx.Seccomp = nil
		cp.Linux = &lx
		initSpec = &cp
	}
	fifo := r.fifoPath(id)
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		return nil, fmt.Errorf("create exec fifo: %w", err)
	}
	// World-writable like runc's: a user-namespaced init runs as an unprivileged host uid and
	// reopens the fifo through /proc/self/fd. The 0700 state directory keeps others out.
	if err := os.Chmod(fifo, 0o622); err != nil {
		return nil, fmt.Errorf("chmod exec fifo: %w", err)
	}
	cplan, err := planCgroup(id, sp.Linux.CgroupsPath, r.Host)
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	c := &creation{id: id, bundle: bundle, rootfs: rootfs, dir: dir, sp: sp, noProcess: noProcess,
		plan: plan, cplan: cplan}
	c.cfg = initConfig{
		Mode: initModeCreate, ID: id, Spec: initSpec, Rootfs: rootfs, Bundle: bundle,
		Console: console, NewMountNS: newMount,
		NewUTSNS:        plan.cloneFlags&unix.CLONE_NEWUTS != 0,
		UnshareCgroupNS: plan.unshareCgns, Cgroup: cplan.state, NoNewKeyring: noNewKeyring,
		Seccomp: filter,
	}
	// Docker's usual container gets the C init (cinit.c), the others the Go init, and so does
	// a spec the C program cannot carry (a NUL byte in a string, say: the Go init refuses it
	// with its own message).
	c.cinit = !r.GoInit && cinitEligible(sp, plan, noProcess)
	if c.cinit {
		if c.prog, err = cinitProgram(&c.cfg); errors.Is(err, errNoCInit) {
			c.cinit = false
		} else if err != nil {
			return nil, err
		}
	}
	return c, nil
}

// saveConfig keeps the container's config in its state directory (Exec and the hooks read it).
func (c *creation) saveConfig() error {
	b, err := json.Marshal(c.sp)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	return writeStateFile(filepath.Join(c.dir, "config.json"), b, 0o600)
}

// makeCgroup creates the container's cgroup with the spec's resources.
func (c *creation) makeCgroup() error {
	var res *specs.LinuxResources
	if c.sp.Linux != nil {
		res = c.sp.Linux.Resources
	}
	if err := makeCgroup(c.cplan, res, c.sp.Linux.Devices); err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	return nil
}

// state is the container's state.json content, without the init's PID and start time.
func (c *creation) state() *containerState {
	owner := ""
	if u, err := user.Current(); err == nil {
		owner = u.Username
	}
	st := &containerState{ID: c.id, Bundle: c.bundle, Rootfs: c.rootfs,
		Created: time.Now().UTC(), Owner: owner, Annotations: c.sp.Annotations, Cgroup: c.cplan.state,
		Spec: &specInfo{NoProcess: c.noProcess}}
	if c.sp.Hooks != nil {
		st.Spec.Poststart, st.Spec.Poststop = c.sp.Hooks.Poststart, c.sp.Hooks.Poststop
	}
	return st
}

// dropCgroup ends whatever runs in a container's cgroup that failed to come up, and removes it.
func (r *Runtime) dropCgroup(id string, cg cgroupState) {
	if err := cg.killAll(unix.SIGKILL); err != nil {
		r.log().Warn("cleanup: kill container processes", "container", id, "err", err)
	}
	if err := cg.remove(); err != nil {
		r.log().Warn("cleanup: remove cgroup", "container", id, "err", err)
	}
}

func writePidFile(path string, pid int) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	return writeFileAtomic(abs, []byte(strconv.Itoa(pid)), 0o644)
}

// dialConsole connects to the console socket on the host side; the child only ever sees the
// connected descriptor, because after pivot_root the path would not resolve.
func dialConsole(path string) (*os.File, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("connect console socket: %w", err)
	}
	defer conn.Close()
	f, err := conn.(*net.UnixConn).File()
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	return f, nil
}

// Start releases a created container's init so it execs the user's process. It returns once
// the user's process runs (or the init died trying): a signal sent right after start must reach
// the user's process, not the init still dropping privileges.
func (r *Runtime) Start(ctx context.Context, id string) error {
	st, err := r.load(id)
	if err != nil {
		return err
	}
	switch s := r.status(st); s {
	case specs.StateCreated:
	case specs.StateStopped:
		return fmt.Errorf("cannot start a container that has stopped: %w", errdefs.ErrFailedPrecondition)
	default:
		return fmt.Errorf("cannot start an already %s container: %w", s, errdefs.ErrFailedPrecondition)
	}
	info := r.specInfo(st)
	if info.NoProcess {
		// Created without a process: nothing to start. The init is ended so the container
		// reads as stopped and can be deleted.
		_ = unix.Kill(st.Pid, unix.SIGKILL)
		return fmt.Errorf("cannot start container %s: process is not set: %w", id, errdefs.ErrFailedPrecondition)
	}
	// Watch the init before opening the fifo: once it is open the init may run its process
	// to completion at any moment.
	w, err := newInitWatch(st)
	if err != nil {
		return err
	}
	defer w.close()
	fifo := r.fifoPath(id)
	// Non-blocking, so that the open does not wait for the init; poll then reports the init's
	// write and, later, the hang-up when the exec closes its (close-on-exec) write end.
	fd, err := unix.Open(fifo, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open exec fifo: %w", err)
	}
	defer unix.Close(fd)
	if err := w.awaitFifo(ctx, fd, false); err != nil {
		return err
	}
	// The process may already have run and its supervisor deleted the container.
	if err := os.Remove(fifo); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove exec fifo: %w", err)
	}
	if err := w.awaitFifo(ctx, fd, true); err != nil {
		return err
	}
	if len(info.Poststart) > 0 {
		state := specs.State{Version: specs.Version, ID: id, Status: specs.StateRunning, Pid: st.Pid, Bundle: st.Bundle, Annotations: st.Annotations}
		if err := runHooks(ctx, info.Poststart, state); err != nil {
			r.log().Warn("poststart hook failed", "container", id, "err", err)
		}
	}
	return nil
}

// initWatch tells when a created container's init exits, through a pidfd when the kernel has
// them (5.3+) and by polling its /proc entry otherwise.
type initWatch struct {
	st    *containerState
	pidfd int
}

func newInitWatch(st *containerState) (*initWatch, error) {
	w := &initWatch{st: st, pidfd: -1}
	if fd, err := unix.PidfdOpen(st.Pid, 0); err == nil {
		w.pidfd = fd
	}
	// The pidfd must name the init, not a process that reused its PID.
	if !st.alive() {
		w.close()
		return nil, fmt.Errorf("container init exited before start: %w", errdefs.ErrFailedPrecondition)
	}
	return w, nil
}

func (w *initWatch) close() {
	if w.pidfd >= 0 {
		_ = unix.Close(w.pidfd)
		w.pidfd = -1
	}
}

// awaitFifo waits on the exec fifo fd. Before the init's byte (started false) it returns once
// the byte is read, and fails if the init exits first. After it (started true) it returns at
// EOF, when the init's write end closed: the exec succeeded or the init died, which either way
// leaves the user's process (or nothing) in place of the init. That wait is bounded, as a
// startContainer hook could hang.
func (w *initWatch) awaitFifo(ctx context.Context, fd int, started bool) error {
	var deadline time.Time
	if started {
		deadline = time.Now().Add(5 * time.Second)
	}
	var buf [16]byte
	for {
		n, err := unix.Read(fd, buf[:])
		switch {
		case n > 0 && !started:
			return nil
		case n > 0:
			// More bytes than the one expected: ignore them and wait for EOF.
		case n == 0 && started:
			return nil
		case err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR):
			return fmt.Errorf("read exec fifo: %w", err)
		}
		// n == 0 before any writer came (a FIFO reads as EOF then), or EAGAIN: wait. A FIFO
		// polls as neither readable nor hung up until a writer has opened it.
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		timeout := 100 // ms; only for ctx and the deadline, events end the wait
		if w.pidfd >= 0 {
			pfd = append(pfd, unix.PollFd{Fd: int32(w.pidfd), Events: unix.POLLIN})
		} else {
			timeout = 2
		}
		if _, err := unix.Poll(pfd, timeout); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll exec fifo: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if started {
			if time.Now().After(deadline) {
				return nil
			}
			continue
		}
		if pfd[0].Revents != 0 {
			continue // read it
		}
		exited := false
		if w.pidfd >= 0 {
			exited = pfd[1].Revents != 0
		} else {
			exited = !w.st.alive()
		}
		if exited {
			// One last look: it may have written before exiting.
			if n, _ := unix.Read(fd, buf[:]); n > 0 {
				return nil
			}
			return fmt.Errorf("container init exited before start: %w", errdefs.ErrFailedPrecondition)
		}
	}
}

// State returns the OCI state of the container.
func (r *Runtime) State(ctx context.Context, id string) (specs.State, error) {
	info, err := r.Info(ctx, id)
	if err != nil {
		return specs.State{}, err
	}
	return info.State, nil
}

// Info returns the OCI state plus runc's extra fields (rootfs, created, owner).
func (r *Runtime) Info(_ context.Context, id string) (Info, error) {
	st, err := r.load(id)
	if err != nil {
		return Info{}, err
	}
	s := r.status(st)
	pid := st.Pid
	if s == specs.StateStopped {
		pid = 0
	}
	return Info{
		State:  specs.State{Version: specs.Version, ID: id, Status: s, Pid: pid, Bundle: st.Bundle, Annotations: st.Annotations},
		Rootfs: st.Rootfs, Created: st.Created, Owner: st.Owner,
	}, nil
}

// List returns the ids of all containers under Root.
func (r *Runtime) List(_ context.Context) ([]string, error) {
	entries, err := os.ReadDir(r.Root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if !validIDChars(e.Name()) {
			continue // the seccomp cache, state directories awaiting removal
		}
		if _, err := os.Stat(filepath.Join(r.Root, e.Name(), "state.json")); err == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Kill sends sig to the container's init, or with all to every process in its cgroup.
func (r *Runtime) Kill(_ context.Context, id string, sig syscall.Signal, all bool) error {
	st, err := r.load(id)
	if err != nil {
		return err
	}
	status := r.status(st)
	if status == specs.StateStopped {
		if all {
			return st.Cgroup.killAll(sig)
		}
		return fmt.Errorf("container not running: %w", errdefs.ErrFailedPrecondition)
	}
	if all {
		if err := st.Cgroup.killAll(sig); err != nil {
			return err
		}
	} else if err := unix.Kill(st.Pid, sig); err != nil {
		return fmt.Errorf("kill container init: %w", err)
	}
	if status == StatePaused && sig == unix.SIGKILL {
		// A frozen process only dies once thawed.
		return st.Cgroup.freeze(false)
	}
	return nil
}

// Delete removes a stopped (or, with force, any) container: processes, cgroup and state.
func (r *Runtime) Delete(ctx context.Context, id string, force bool) error {
	left, err := r.DeleteLater(ctx, id, force)
	if left != "" {
		if rerr := os.RemoveAll(left); rerr != nil && err == nil {
			err = fmt.Errorf("delete container %s state: %w", id, rerr)
		}
	}
	return err
}

// goneMark starts the name of a deleted container's state directory that awaits removal; '@'
// is in no container ID (nor in List's answer).
const goneMark = "@gone-"

// DeleteLater is Delete that leaves the container's state files to the caller: their
// directory is renamed aside (to the returned path, "" when there is none) for the caller to
// remove when it suits it (deleting a file can wait for the disk). Directories left by a
// caller that died are SweepGone's.
func (r *Runtime) DeleteLater(ctx context.Context, id string, force bool) (string, error) {
	st, err := r.load(id)
	if err != nil {
		if force && errors.Is(err, errCorruptState) {
			// Left by a host crash (the processes it described are gone with it); the cgroup
			// cannot be known, so only the state goes.
			r.log().Warn("delete: removing unreadable container state", "container", id, "err", err)
			return r.aside(id), nil
		}
		if force && errdefs.IsNotFound(err) {
			return "", r.deleteUnfinished(id, err)
		}
		return "", err
	}
	status := r.status(st)
	// The OCI spec requires an error for any container that is not stopped, including a created
	// one (runc kills created containers instead; callers that want that pass force).
	if status != specs.StateStopped && !force {
		return "", fmt.Errorf("cannot delete container %s that is not stopped: %s: %w", id, status, errdefs.ErrFailedPrecondition)
	}
	if status != specs.StateStopped {
		if err := st.Cgroup.killAll(unix.SIGKILL); err != nil {
			r.log().Warn("delete: kill container processes", "container", id, "err", err)
		}
		_ = unix.Kill(st.Pid, unix.SIGKILL)
		if status == StatePaused {
			_ = st.Cgroup.freeze(false)
		}
		deadline := time.Now().Add(10 * time.Second)
		for st.alive() && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	} else if pids, _ := st.Cgroup.pids(); len(pids) > 0 {
		// The init is gone but children it left behind (it was not a real init) must not
		// outlive the container.
		_ = st.Cgroup.killAll(unix.SIGKILL)
	}
	if hooks := r.specInfo(st).Poststop; len(hooks) > 0 {
		state := specs.State{Version: specs.Version, ID: id, Status: specs.StateStopped, Bundle: st.Bundle, Annotations: st.Annotations}
		if err := runHooks(ctx, hooks, state); err != nil {
			r.log().Warn("poststop hook failed", "container", id, "err", err)
		}
	}
	if err := st.Cgroup.remove(); err != nil {
		return "", fmt.Errorf("delete container %s: %w", id, err)
	}
	return r.aside(id), nil
}

// aside renames container id's state directory out of the way and returns where it went; if
// the rename fails the directory is the returned path itself, still to be removed.
func (r *Runtime) aside(id string) string {
	to := filepath.Join(r.Root, goneMark+id)
	if err := os.Rename(r.dir(id), to); err != nil {
		return r.dir(id)
	}
	return to
}

// SweepGone removes the state directories that callers of DeleteLater left behind.
func (r *Runtime) SweepGone() {
	ents, _ := os.ReadDir(r.Root)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), goneMark) {
			_ = os.RemoveAll(filepath.Join(r.Root, e.Name()))
		}
	}
}

// deleteUnfinished removes a state directory that has no state file: a creation whose
// supervisor died before the init was ready (a spare shim whose daemon was killed between
// Prepare and the go-ahead kills its init and exits, leaving Prepare's directory and Finish's
// cgroup). Left there, the directory would make every later create of the ID fail with
// "already exists". The cgroup is found from the saved config, when Finish got that far, and
// whatever entered it is killed. notFound is returned when there is no directory either.
func (r *Runtime) deleteUnfinished(id string, notFound error) error {
	dir := r.dir(id)
	if _, err := os.Lstat(dir); err != nil {
		return notFound
	}
	r.log().Warn("delete: removing a container whose creation did not finish", "container", id)
	if sp, err := r.loadSpec(id); err == nil && sp.Linux != nil {
		if cp, err := planCgroup(id, sp.Linux.CgroupsPath, r.Host); err == nil {
			r.dropCgroup(id, cp.state)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("delete container %s state: %w", id, err)
	}
	return nil
}

// Pause freezes every process of a running container.
func (r *Runtime) Pause(_ context.Context, id string) error {
	st, err := r.load(id)
	if err != nil {
		return err
	}
	if s := r.status(st); s != specs.StateRunning {
		return fmt.Errorf("container not running (%s): %w", s, errdefs.ErrFailedPrecondition)
	}
	return st.Cgroup.freeze(true)
}

// Resume thaws a paused container.
func (r *Runtime) Resume(_ context.Context, id string) error {
	st, err := r.load(id)
	if err != nil {
		return err
	}
	if s := r.status(st); s != StatePaused {
		return fmt.Errorf("container not paused (%s): %w", s, errdefs.ErrFailedPrecondition)
	}
	return st.Cgroup.freeze(false)
}

// Ps lists the host PIDs of every process in the container.
func (r *Runtime) Ps(_ context.Context, id string) ([]int, error) {
	st, err := r.load(id)
	if err != nil {
		return nil, err
	}
	return st.Cgroup.pids()
}

// Stats samples the container's cgroup.
func (r *Runtime) Stats(_ context.Context, id string) (*Stats, error) {
	st, err := r.load(id)
	if err != nil {
		return nil, err
	}
	return st.Cgroup.stats()
}

// OOMKilled reports whether the kernel OOM killer killed any process of the container. Call it
// after the init exited and before Delete (Delete removes the counters).
func (r *Runtime) OOMKilled(_ context.Context, id string) (bool, error) {
	st, err := r.load(id)
	if err != nil {
		return false, err
	}
	return st.Cgroup.oomKilled()
}

// Exec starts process p inside running container id and returns its host PID. The process is
// not a child of the caller (it is forked from an intermediate that joined the container's
// namespaces), so a caller that wants its exit status must be a child subreaper
// (prctl PR_SET_CHILD_SUBREAPER), as the shim is.
func (r *Runtime) Exec(ctx context.Context, id string, p specs.Process, opts ExecOpts) (pid int, retErr error) {
	st, err := r.load(id)
	if err != nil {
		return 0, err
	}
	if s := r.status(st); s != specs.StateRunning && s != specs.StateCreated {
		return 0, fmt.Errorf("cannot exec in a %s container: %w", s, errdefs.ErrFailedPrecondition)
	}
	sp, err := r.loadSpec(id)
	if err != nil {
		return 0, err
	}
	if len(p.Args) == 0 {
		return 0, fmt.Errorf("exec: process args must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	if p.Terminal && opts.ConsoleSocket == "" {
		return 0, fmt.Errorf("process.terminal is set but no console socket was given: %w", errdefs.ErrInvalidArgument)
	}
	rl, warnings, err := clampRlimits(p.Rlimits, currentHardLimit)
	if err != nil {
		return 0, err
	}
	for _, w := range warnings {
		r.log().Warn(w, "container", id)
	}
	p.Rlimits = rl
	sp.Process = &p

	// Join every namespace of the container's init, user namespace first.
	var join []string
	byType := map[specs.LinuxNamespaceType]bool{}
	for _, ns := range sp.Linux.Namespaces {
		byType[ns.Type] = true
	}
	nsFile := map[specs.LinuxNamespaceType]string{
		specs.UserNamespace: "user", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts",
		specs.NetworkNamespace: "net", specs.PIDNamespace: "pid", specs.CgroupNamespace: "cgroup",
		specs.TimeNamespace: "time", specs.MountNamespace: "mnt",
	}
	for _, t := range nsJoinOrder {
		if byType[t] {
			join = append(join, fmt.Sprintf("%d:/proc/%d/ns/%s", namespaceFlags[t], st.Pid, nsFile[t]))
		}
	}
	var extra []*os.File
	devNull, err := os.Open(os.DevNull) // placeholder for the fifo slot
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer devNull.Close()
	extra = append(extra, devNull)
	if opts.ConsoleSocket != "" {
		f, err := dialConsole(opts.ConsoleSocket)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		extra = append(extra, f)
	} else {
		extra = append(extra, devNull)
	}
	ch, err := r.startChild(ctx, 0, sp, join, true, false, extra, opts.Stdio)
	if err != nil {
		return 0, err
	}
	defer func() {
		if retErr != nil {
			ch.kill()
		}
	}()
	if err := st.Cgroup.addProc(ch.pid); err != nil {
		return 0, fmt.Errorf("join cgroup: %w", err)
	}
	ecfg := initConfig{Mode: initModeExec, ID: id, Spec: sp, Console: opts.ConsoleSocket != ""}
	if sp.Linux != nil && sp.Linux.Seccomp != nil {
		if ecfg.Seccomp, err = r.seccompFor(sp.Linux.Seccomp); err != nil {
			return 0, err
		}
		lx := *sp.Linux
		lx.Seccomp = nil
		sp.Linux = &lx
	}
	if err := ch.enc.Encode(ecfg); err != nil {
		return 0, fmt.Errorf("send config to exec process: %w", err)
	}
	// The child closes its end on successful execve (the descriptor is close-on-exec), so EOF
	// after "ready" means the user's process is running.
	for {
		m, err := ch.readMsg()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
		if m.Type == msgError {
			return 0, fmt.Errorf("exec: %s", m.Error)
		}
	}
	ch.close()
	if opts.PidFile != "" {
		if err := writePidFile(opts.PidFile, ch.pid); err != nil {
			return 0, err
		}
	}
	return ch.pid, nil
}

// WaitPid waits for process pid (a child or, for a subreaper, an adopted descendant) and returns
// its exit code the way a shell reports it: the exit status, or 128+signal.
func WaitPid(pid int) (int, error) {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("wait %d: %w", pid, err)
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ws.ExitStatus(), nil
	}
}

// LoadBundleSpecOf returns the config a container was created with (as saved at Create, with
// rlimits clamped), for callers such as `berth oci exec` that inherit its process settings.
func LoadBundleSpecOf(r *Runtime, id string) (*specs.Spec, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	if _, err := r.load(id); err != nil {
		return nil, err
	}
	return r.loadSpec(id)
}
