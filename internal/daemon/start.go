package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/fsutil"
	"github.com/berth-dev/berth/internal/runtime/linux"
	"github.com/berth-dev/berth/internal/shim"
	"github.com/berth-dev/berth/internal/snapshot"
	"github.com/containerd/errdefs"
	mcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/profiles/seccomp"
	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// shimHandle is a live connection to a container's shim.
type shimHandle struct {
	dir    string
	client *shim.Client
}

// attachWaiter is an attach request that arrived while the container was only created. Start
// sends it the shim, then waits on ready before releasing the process, so no output is lost.
type attachWaiter struct {
	h     chan *shimHandle
	ready chan struct{}
}

// binary is the berth executable: the shim, and the `--init` of containers (it is static).
func (d *Daemon) binary() string {
	if d.cfg.Binary != "" {
		return d.cfg.Binary
	}
	self, err := os.Executable()
	if err != nil {
		return ""
	}
	return self
}

func (d *Daemon) cgroupParent() string {
	if d.cfg.CgroupParent == "" {
		return DefaultCgroupParent
	}
	return d.cfg.CgroupParent
}

// shimDir is a container's shim state directory. It is named by a 16-hex prefix of the ID:
// unix socket paths must fit in 108 bytes, and the shim's sockets live in this directory.
func (d *Daemon) shimDir(id string) string   { return filepath.Join(d.cfg.ExecRoot, "shims", id[:16]) }
func (d *Daemon) runtimeRoot() string        { return filepath.Join(d.cfg.ExecRoot, "runtime") }
func (d *Daemon) rootfsDir(id string) string { return filepath.Join(d.ctrDir(id), "rootfs") }
func (d *Daemon) logPath(id string) string   { return filepath.Join(d.ctrDir(id), id+"-json.log") }

// ContainerStart starts a created or stopped container.
func (d *Daemon) ContainerStart(ctx context.Context, ref string) error {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.rec.State.Status {
	case mcontainer.StateRunning:
		return nil
	case mcontainer.StatePaused:
		return conflict("cannot start a paused container, try unpause instead")
	case mcontainer.StateRemoving, mcontainer.StateDead:
		return conflict(fmt.Sprintf("container %s is marked for removal and cannot be started", c.rec.ID))
	}
	c.rec.State.StoppedByUser = false
	c.cancelRestart()
	return d.startLocked(ctx, c)
}

// startLocked runs a container; c.mu is held.
func (d *Daemon) startLocked(ctx context.Context, c *ctr) (retErr error) {
	rec := &c.rec
	id := rec.ID
	rootfs := d.rootfsDir(id)
	t0 := time.Now()
	phase := func(name string) {
		d.log.Debug("start phase", "container", id[:12], "phase", name, "at", time.Since(t0))
	}
	// The network (for most modes a new namespace: an unshare and a bind mount, ~1 ms) and the
	// /etc files do not depend on the root filesystem: they are set up while it is mounted, on
	// the other CPU. The goroutine only reads rec, which nothing writes until it is joined.
	type netResult struct {
		nsPath string
		err    error
	}
	netc := make(chan netResult, 1)
	go func() {
		var r netResult
		r.nsPath, r.err = d.prepareNet(ctx, rec)
		d.log.Debug("start phase", "container", id[:12], "phase", "network ready", "at", time.Since(t0))
		netc <- r
	}()
	var netRes *netResult
	awaitNet := func() netResult {
		if netRes == nil {
			r := <-netc
			netRes = &r
		}
		return *netRes
	}
	mounted := false
	// A failed start leaves no namespace and no mount: the network is taken down once its
	// setup has finished (whichever step failed), then the root filesystem is unmounted.
	defer func() {
		if retErr == nil {
			return
		}
		if r := awaitNet(); r.err == nil {
			d.net.Down(id)
		}
		if mounted {
			_ = snapshot.UnmountAll(rootfs)
			d.failStart(c, retErr)
		}
	}()
	mounts := c.mounts
	if mounts == nil {
		var err error
		if mounts, err = d.snap.Mounts(ctx, snapKey(id)); err != nil {
			return fmt.Errorf("root filesystem of %s: %w", id, err)
		}
		c.mounts = mounts
	}
	if !c.takePremount() {
		mounts = d.withInitLayer(rec.ChainID, mounts)
		_ = snapshot.UnmountAll(rootfs)
		if err := mountRootfs(mounts, rootfs, rec.HostConfig.AutoRemove, d.bootID); err != nil {
			return fmt.Errorf("mount root filesystem: %w", err)
		}
	}
	mounted = true
	phase("mounted")
	u, err := resolveUser(rootfs, rec.Config.User, rec.HostConfig.GroupAdd)
	if err != nil {
		return invalid(err)
	}
	sc, err := d.seccompFor(rec.HostConfig)
	if err != nil {
		return invalid(err)
	}
	cwd := rec.Config.WorkingDir
	if cwd != "" {
		// Docker creates a missing working directory.
		if err := mkdirInRoot(rootfs, cwd, int(u.UID), int(u.GID)); err != nil {
			return fmt.Errorf("create working directory %s: %w", cwd, err)
		}
	}
	extraMounts, err := d.specMounts(ctx, rec, rootfs)
	if err != nil {
		return err
	}
	// The container's own namespace has a known path: the spec is built and the runtime
	// prepares the container while the network comes up; the network must be up before the
	// init starts (netReady). A namespace joined from elsewhere is waited for first.
	var nsPath string
	if mode := rec.HostConfig.NetworkMode; mode == "host" || mode.IsContainer() {
		nr := awaitNet()
		if nr.err != nil {
			return nr.err
		}
		nsPath = nr.nsPath
	} else {
		nsPath = d.net.NetnsPath(id)
	}
	netReady := func() error {
		nr := awaitNet()
		if nr.err == nil && nr.nsPath != nsPath {
			// Never expected: the spec names the path NetnsPath gives for the container.
			return fmt.Errorf("network namespace of %s is at %s, not %s", id, nr.nsPath, nsPath)
		}
		phase("network")
		return nr.err
	}
	spec, err := container.Spec(container.SpecInput{
		NetNSPath:      nsPath,
		Mounts:         extraMounts,
		ID:             id,
		Config:         rec.Config,
		HostConfig:     rec.HostConfig,
		User:           u,
		Rootfs:         rootfs,
		CgroupsPath:    path.Join(d.cgroupParent(), id),
		NetHost:        rec.HostConfig.NetworkMode == "host",
		HostsPath:      filepath.Join(d.ctrDir(id), "hosts"),
		ResolvConfPath: filepath.Join(d.ctrDir(id), "resolv.conf"),
		HostnamePath:   filepath.Join(d.ctrDir(id), "hostname"),
		Seccomp:        sc,
		InitBinary:     d.binary(),
	})
	if err != nil {
		return invalid(err)
	}
	phase("spec")
	// The previous run's shim deletes its container from the runtime only a while after the
	// exit, and only if the daemon has not: do it now, or the create below would find it.
	_ = d.runtime().Delete(ctx, id, true)
	h, err := d.launchShim(ctx, rec, spec, netReady)
	if err != nil {
		return err
	}
	phase("shim ready")
	// Hand the shim to attach requests that came before start, and let them connect.
	for _, w := range c.attachWaiters {
		w.h <- h
		select {
		case <-w.ready:
		case <-time.After(5 * time.Second):
		}
	}
	c.attachWaiters = nil
	st, ok, err := h.client.Start(ctx)
	if err != nil {
		_ = h.client.Kill(context.WithoutCancel(ctx), syscall.SIGKILL, true)
		// The cgroup and the runtime's state go now; the shim ends by itself once its
		// clients are answered.
		_ = d.runtime().Delete(context.WithoutCancel(ctx), id, true)
		return fmt.Errorf("start container: %w", err)
	}
	phase("started")
	if !ok {
		if st, err = h.client.State(ctx); err != nil {
			return fmt.Errorf("container state: %w", err)
		}
	}
	rec.Generation++
	rec.State = ctrState{
		Status:        mcontainer.StateRunning,
		Pid:           st.Pid,
		StartedAt:     time.Now().UTC(),
		StoppedByUser: rec.State.StoppedByUser,
	}
	if st.State == "exited" {
		// It exited before we looked; the monitor records the exit.
		rec.State.Pid = 0
	}
	c.shim = h
	if err := d.saveCtr(rec); err != nil {
		return fmt.Errorf("save container: %w", err)
	}
	d.events.Publish(events.ContainerEventType, events.ActionStart, id, ctrAttrs(rec))
	go d.monitor(c, h, rec.Generation)
	return nil
}

// prepareNet does what a start needs besides the root filesystem: the container's /etc files
// (rewritten when a host crash lost them) and its network. It returns the network namespace
// to join ("" for the host's).
func (d *Daemon) prepareNet(ctx context.Context, rec *ctrRecord) (string, error) {
	// The /etc files are written without fsync (they derive from the record); a host crash can
	// leave one empty, and this start then writes them afresh (before netUp adds to them).
	if d.etcFilesLost(rec.ID) {
		if err := d.writeEtcFiles(rec, false); err != nil {
			return "", err
		}
	}
	return d.netUp(ctx, rec)
}

// failStart records a start that failed the way Docker does: the container is exited with
// 127 (command not found), 126 (not executable) or 128, the error is kept in its state,
// waiters and parked attach requests are released, and --rm removes it. c.mu is held.
func (d *Daemon) failStart(c *ctr, err error) {
	rec := &c.rec
	msg := err.Error()
	code := 128
	switch low := strings.ToLower(msg); {
	case strings.Contains(low, "no such file or directory"), strings.Contains(low, "executable file not found"), strings.Contains(low, "not found in $path"):
		code = 127
	case strings.Contains(low, "permission denied"), strings.Contains(low, "exec format error"):
		code = 126
	}
	rec.State.Status = mcontainer.StateExited
	rec.State.Pid = 0
	rec.State.ExitCode = code
	rec.State.Error = msg
	rec.State.FinishedAt = time.Now().UTC()
	c.shim = nil
	_ = os.RemoveAll(d.shimDir(rec.ID))
	if serr := d.saveCtr(rec); serr != nil {
		d.log.Error("save failed start", "container", rec.ID, "err", serr)
	}
	for _, w := range c.attachWaiters {
		close(w.h)
	}
	c.attachWaiters = nil
	attrs := ctrAttrs(rec)
	attrs["exitCode"] = strconv.Itoa(code)
	d.events.Publish(events.ContainerEventType, events.ActionDie, rec.ID, attrs)
	close(c.exited)
	c.exited = make(chan struct{})
	if rec.HostConfig.AutoRemove {
		id := rec.ID
		go func() {
			if err := d.ContainerRemove(context.Background(), id, true, true); err != nil && !errdefs.IsNotFound(err) {
				d.log.Warn("auto-remove after failed start", "container", id, "err", err)
			}
		}()
	}
}

// mountRootfs mounts a container's root filesystem. The writable layer of a container removed
// at exit (--rm) is mounted "volatile", as podman does for --rm: overlayfs then skips every
// sync of the upper filesystem, above all the whole-filesystem sync at unmount (~2.4 ms, on
// the path of every `run --rm`). Nothing is lost that would be kept: after a host crash such a
// container is removed anyway, and a volatile upper directory is never mounted again. Kernels
// before 5.10 lack the option; the mount is retried without it.
//
// overlayfs marks a volatile work directory (work/incompat/volatile) and refuses to mount it
// again, since after a crash the upper directory may be torn. A --rm container can still be
// restarted (docker restart), so the boot ID is kept beside the work directory: on the same boot
// the earlier mount ended cleanly (a crashed daemon leaves its mounts in the kernel) and the mark
// is removed; after a reboot the layer is refused. bootID is this boot's (nil: read it here).
func mountRootfs(mounts []snapshot.Mount, rootfs string, autoRemove bool, bootID []byte) error {
	if autoRemove {
		vol := make([]snapshot.Mount, len(mounts))
		copy(vol, mounts)
		workdir := ""
		for i, m := range vol {
			if m.Type != "overlay" {
				continue
			}
			for _, o := range m.Options {
				if w, ok := strings.CutPrefix(o, "workdir="); ok {
					workdir = w
				}
			}
			if workdir != "" {
				vol[i].Options = append(slices.Clip(m.Options), "volatile")
				break
			}
		}
		if workdir != "" {
			if err := prepareVolatile(workdir, bootID); err != nil {
				return err
			}
			err := snapshot.MountAll(vol, rootfs)
			if err == nil || !errors.Is(err, syscall.EINVAL) {
				return err
			}
			// A kernel without "volatile" (before 5.10).
		}
	}
	return snapshot.MountAll(mounts, rootfs)
}

// prepareVolatile clears overlayfs's volatile mark on workdir when the mount that set it ended on
// this boot, and records this boot (boot, or read here when nil) for the next mount.
func prepareVolatile(workdir string, boot []byte) error {
	if boot == nil {
		var err error
		if boot, err = readBootID(); err != nil {
			return err
		}
	}
	bootFile := filepath.Join(filepath.Dir(workdir), "volatile-boot-id")
	mark := filepath.Join(workdir, "work", "incompat", "volatile")
	if _, err := os.Lstat(mark); err == nil {
		prev, _ := os.ReadFile(bootFile)
		if string(prev) != string(boot) {
			return errdefs.ErrFailedPrecondition.WithMessage("the writable layer of this --rm container was in use when the host went down and may be damaged; remove the container")
		}
		if err := os.RemoveAll(filepath.Join(workdir, "work", "incompat")); err != nil {
			return fmt.Errorf("clear volatile mark: %w", err)
		}
	}
	// No fsync: a lost file after a crash reads as another boot, which refuses, as it should.
	return os.WriteFile(bootFile, boot, 0o600)
}

// readBootID reads the kernel's ID of this boot. It cannot change while a process lives, so the
// daemon reads it once.
func readBootID() ([]byte, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return nil, fmt.Errorf("read boot id: %w", err)
	}
	return b, nil
}

// seccompFor picks the profile --security-opt asks for: Docker's default, none, or a file in
// Docker's profile format.
func (d *Daemon) seccompFor(hc *mcontainer.HostConfig) (*specs.LinuxSeccomp, error) {
	so, err := container.ParseSecurityOpts(hc.SecurityOpt)
	if err != nil {
		return nil, err
	}
	if so.SeccompUnconfined || hc.Privileged {
		return nil, nil
	}
	rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
	if caps, err := container.Capabilities(hc.CapAdd, hc.CapDrop, hc.Privileged); err == nil {
		rs.Process.Capabilities.Bounding = caps
	}
	if so.SeccompProfile != "" {
		// The CLI sends the profile's content, not its path.
		return seccomp.LoadProfile(so.SeccompProfile, rs)
	}
	return seccomp.GetDefaultProfile(rs)
}

// resolveUser reads the image's /etc/passwd and /etc/group (inside rootfs, never following
// links out of it) to turn "name", "uid", "name:group" or "uid:gid" into numeric IDs.
func resolveUser(rootfs, spec string, groupAdd []string) (container.User, error) {
	defaults := user.ExecUser{Uid: 0, Gid: 0, Home: "/"}
	open := func(p string) io.Reader {
		f, err := fsutil.OpenInRoot(rootfs, p, os.O_RDONLY)
		if err != nil {
			return nil
		}
		b, _ := io.ReadAll(io.LimitReader(f, 4<<20))
		_ = f.Close()
		return strings.NewReader(string(b))
	}
	passwd, group := open("/etc/passwd"), open("/etc/group")
	eu, err := user.GetExecUser(spec, &defaults, passwd, group)
	if err != nil {
		return container.User{}, fmt.Errorf("unable to find user %s: %w", spec, err)
	}
	u := container.User{UID: uint32(eu.Uid), GID: uint32(eu.Gid), Home: eu.Home}
	for _, g := range eu.Sgids {
		u.AdditionalGids = append(u.AdditionalGids, uint32(g))
	}
	if len(groupAdd) > 0 {
		gids, err := user.GetAdditionalGroups(groupAdd, open("/etc/group"))
		if err != nil {
			return container.User{}, fmt.Errorf("invalid --group-add: %w", err)
		}
		for _, g := range gids {
			u.AdditionalGids = append(u.AdditionalGids, uint32(g))
		}
	}
	return u, nil
}

// mkdirInRoot creates dir (absolute, inside rootfs) and its parents, owned by uid:gid, without
// following links out of rootfs.
func mkdirInRoot(rootfs, dir string, uid, gid int) error {
	parts := strings.Split(filepath.Clean("/"+dir), "/")
	cur := "/"
	for _, p := range parts {
		if p == "" {
			continue
		}
		next := filepath.Join(cur, p)
		f, err := fsutil.OpenInRoot(rootfs, next, os.O_RDONLY|syscall.O_DIRECTORY)
		if err == nil {
			_ = f.Close()
			cur = next
			continue
		}
		parent, perr := fsutil.OpenInRoot(rootfs, cur, os.O_RDONLY|syscall.O_DIRECTORY)
		if perr != nil {
			return perr
		}
		err = syscall.Mkdirat(int(parent.Fd()), p, 0o755)
		if err == nil {
			_ = syscall.Fchownat(int(parent.Fd()), p, uid, gid, 0x100 /* AT_SYMLINK_NOFOLLOW */)
		}
		_ = parent.Close()
		if err != nil && !errors.Is(err, syscall.EEXIST) {
			return err
		}
		cur = next
	}
	return nil
}

// launchShim starts `berth shim` for a container in its own session and waits until the
// container is created (or creating it failed, with the runtime's message).
// netReady waits for the container's network; the init must not start before it is up.
func (d *Daemon) launchShim(ctx context.Context, rec *ctrRecord, spec *specs.Spec, netReady func() error) (*shimHandle, error) {
	// The shim will move the container's init into its cgroup in ~10 ms; the kernel makes the
	// first such move after a quiet spell wait for an RCU grace period, which this starts now.
	d.primeCgroups()
	dir := d.shimDir(rec.ID)
	_ = os.RemoveAll(dir) // a previous run's; a spare makes it anew, in parallel with the init
	self := d.binary()
	if self == "" {
		return nil, errors.New("cannot find the berth binary to start the shim")
	}
	cfg := shim.Config{ID: rec.ID, Dir: dir, LogPath: d.logPath(rec.ID), Terminal: rec.Config.Tty,
		OpenStdin: rec.Config.OpenStdin, StdinOnce: rec.Config.StdinOnce, RuntimeRoot: d.runtimeRoot()}
	// Docker's usual container is prepared here and started by a spare shim in C; the others
	// (a user namespace, BERTH_INIT=go...) by a `berth shim` that runs the runtime itself.
	prep, err := d.runtime().Prepare(ctx, rec.ID, d.ctrDir(rec.ID), spec, rec.Config.Tty)
	if nerr := netReady(); nerr != nil {
		if err == nil {
			prep.Abort()
		}
		return nil, nerr
	}
	if err == nil {
		return d.launchSpare(ctx, cfg, prep)
	}
	if !errors.Is(err, linux.ErrNotPrepared) {
		return nil, errdefs.ErrUnknown.WithMessage("failed to create container: create container: " + err.Error())
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create shim directory: %w", err)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	// The shim below reads the bundle's config.json (a prepared container needs none). No
	// fsync: it is regenerated at every start and read only by that shim, after this write. A
	// crash leaves at worst a torn file that nothing reads before the next start rewrites it;
	// the container's record in bbolt is what survives crashes. (The runtime copies it into its
	// own state at create.)
	if err := os.WriteFile(filepath.Join(d.ctrDir(rec.ID), "config.json"), b, 0o600); err != nil {
		return nil, fmt.Errorf("write container config: %w", err)
	}
	args := []string{"shim", "--id", rec.ID, "--bundle", d.ctrDir(rec.ID), "--dir", dir,
		"--log", cfg.LogPath, "--runtime-root", cfg.RuntimeRoot}
	if cfg.Terminal {
		args = append(args, "--tty")
	}
	if cfg.OpenStdin {
		args = append(args, "--stdin")
	}
	if cfg.StdinOnce {
		args = append(args, "--stdin-once")
	}
	line, lerr := d.startShim(ctx, self, args, dir)
	if lerr != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res := struct {
		line string
		err  error
	}{strings.TrimSpace(line), lerr}
	if msg, ok := strings.CutPrefix(res.line, "error "); ok {
		return nil, errdefs.ErrUnknown.WithMessage("failed to create container: " + msg)
	}
	if res.line != "ok" {
		tail, _ := os.ReadFile(filepath.Join(dir, "shim.log"))
		return nil, fmt.Errorf("shim failed to start (%v): %s", res.err, lastLines(string(tail), 5))
	}
	return &shimHandle{dir: dir, client: shim.NewClient(dir)}, nil
}

// launchSpare has a spare shim, or a fresh one when none is ready, start the prepared container.
func (d *Daemon) launchSpare(ctx context.Context, cfg shim.Config, prep *linux.Prepared) (_ *shimHandle, retErr error) {
	defer func() {
		if retErr != nil {
			prep.Abort()
		}
	}()
	job, err := (&shim.SpareJob{Config: cfg, CloneFlags: uint64(prep.CloneFlags), InitEnv: prep.InitEnv,
		Program: prep.Program, Procs: prep.Procs, Fifo: prep.Fifo, OOMCounter: prep.OOMCounter,
		StateFile: prep.StateFile, StatePrefix: prep.StatePrefix, StateSuffix: prep.StateSuffix}).Encode()
	if err != nil {
		return nil, err
	}
	var ferr error
	finish := func() error { ferr = prep.Finish(); return ferr }
	sp := d.shims.take()
	if sp == nil {
		if sp, err = d.shims.start(); err != nil {
			return nil, err
		}
	}
	line, taken, err := sp.assign(ctx, job, finish)
	if !taken {
		// The spare died before it took the job: a fresh one gets it.
		d.log.Debug("spare shim unusable; starting one", "err", err)
		if sp, err = d.shims.start(); err != nil {
			return nil, err
		}
		line, _, err = sp.assign(ctx, job, finish)
	}
	if ferr != nil {
		return nil, errdefs.ErrUnknown.WithMessage("failed to create container: create container: " + ferr.Error())
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		tail, _ := os.ReadFile(filepath.Join(cfg.Dir, "shim.log"))
		return nil, fmt.Errorf("shim failed to start (%v): %s", err, lastLines(string(tail), 5))
	}
	if err := shim.SpareReport(line); err != nil {
		return nil, errdefs.ErrUnknown.WithMessage("failed to create container: " + err.Error())
	}
	return &shimHandle{dir: cfg.Dir, client: shim.NewClient(cfg.Dir)}, nil
}

// startShim starts a fresh `berth shim` and returns its report line (see launchShim).
func (d *Daemon) startShim(ctx context.Context, self string, args []string, dir string) (string, error) {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return "", err
	}
	defer readyR.Close()
	logf, err := os.OpenFile(filepath.Join(dir, "shim.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		readyW.Close()
		return "", err
	}
	cmd := exec.Command(self, args...)
	cmd.Args[0] = "berth"
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = shimEnv()
	err = cmd.Start()
	readyW.Close()
	logf.Close()
	if err != nil {
		return "", fmt.Errorf("start shim: %w", err)
	}
	// Reap the shim when it ends; it is our child until this daemon exits.
	go func() { _ = cmd.Wait() }()
	type result struct {
		line string
		err  error
	}
	resc := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(readyR).ReadString('\n')
		resc <- result{line, err}
	}()
	select {
	case r := <-resc:
		return r.line, r.err
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		return "", ctx.Err()
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		return "", errors.New("shim did not report within 60s")
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// monitor waits for a run of a container to end and records its exit.
func (d *Daemon) monitor(c *ctr, h *shimHandle, gen int) {
	st, err := h.client.Wait(d.ctx)
	if err != nil {
		if d.ctx.Err() != nil {
			return // daemon shutting down; the next daemon reconciles
		}
		d.log.Warn("lost container shim", "container", c.rec.ID, "err", err)
		st = shim.Status{State: "exited", ExitCode: 255, ExitedAt: time.Now().UTC()}
		if errors.Is(err, shim.ErrShimGone) {
			d.killOrphan(c.rec.ID)
		}
	}
	d.handleExit(c, gen, st)
}

// killOrphan kills a container whose shim died, through the runtime's own state.
func (d *Daemon) killOrphan(id string) {
	rt := d.runtime()
	ctx := context.Background()
	_ = rt.Kill(ctx, id, syscall.SIGKILL, true)
	_ = rt.Delete(ctx, id, true)
}

// handleExit records a container's exit and applies its restart policy.
func (d *Daemon) handleExit(c *ctr, gen int, st shim.Status) {
	c.mu.Lock()
	if c.rec.Generation != gen || (c.rec.State.Status != mcontainer.StateRunning && c.rec.State.Status != mcontainer.StatePaused) {
		c.mu.Unlock()
		return
	}
	rec := &c.rec
	autoRemove := rec.HostConfig.AutoRemove && !c.restarting
	if !autoRemove {
		// (The removal of a --rm container, next, releases all it holds at once.)
		t0 := time.Now()
		d.releaseRun(rec.ID)
		d.log.Debug("exit phase", "container", rec.ID[:12], "phase", "released", "at", time.Since(t0))
	}
	ranFor := time.Since(rec.State.StartedAt)
	if !st.ExitedAt.IsZero() && !rec.State.StartedAt.IsZero() {
		ranFor = st.ExitedAt.Sub(rec.State.StartedAt)
	}
	finished := st.ExitedAt
	if finished.IsZero() {
		finished = time.Now().UTC()
	}
	rec.State.Status = mcontainer.StateExited
	rec.State.Pid = 0
	rec.State.ExitCode = st.ExitCode
	rec.State.OOMKilled = st.OOMKilled
	rec.State.FinishedAt = finished
	c.shim = nil
	if !autoRemove {
		_ = os.RemoveAll(d.shimDir(rec.ID))
	}
	// A --rm container is deleted next; recording its exit first would cost a transaction on
	// the path of every `run --rm` for nothing: after a crash here its record still says
	// running, its shim is gone, and the restarted daemon removes it all the same.
	if !autoRemove {
		if err := d.saveCtr(rec); err != nil {
			d.log.Error("save container exit", "container", rec.ID, "err", err)
		}
	}
	attrs := ctrAttrs(rec)
	if st.OOMKilled {
		d.events.Publish(events.ContainerEventType, events.ActionOOM, rec.ID, attrs)
	}
	attrs["exitCode"] = strconv.Itoa(st.ExitCode)
	d.events.Publish(events.ContainerEventType, events.ActionDie, rec.ID, attrs)
	close(c.exited)
	c.exited = make(chan struct{})
	restart, delay := d.restartDecision(rec, ranFor)
	if restart {
		rec.RestartCount++
		rec.State.Status = mcontainer.StateRestarting
		_ = d.saveCtr(rec)
		stop := make(chan struct{})
		c.stopRestart = stop
		go d.restartAfter(c, delay, stop)
	}
	c.mu.Unlock()
	if autoRemove {
		// Not found or conflicting: a `rm -f` removed it first.
		if err := d.ContainerRemove(context.Background(), rec.ID, true, true); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsConflict(err) {
			d.log.Warn("auto-remove container", "container", rec.ID, "err", err)
		}
	}
}

// releaseRun unmounts a container's root filesystem and takes its network down after its
// process exited. The two run in parallel: each unmount waits for an RCU grace period.
func (d *Daemon) releaseRun(id string) {
	down := make(chan struct{})
	go func() {
		defer close(down)
		d.net.Down(id)
	}()
	_ = snapshot.UnmountAll(d.rootfsDir(id))
	<-down
}

// restartDecision applies the restart policy: whether to restart, and after what back-off
// (Docker's: 100ms doubling up to a minute, reset after a run of 10s or more).
func (d *Daemon) restartDecision(rec *ctrRecord, ranFor time.Duration) (bool, time.Duration) {
	p := rec.HostConfig.RestartPolicy
	switch p.Name {
	case mcontainer.RestartPolicyAlways:
	case mcontainer.RestartPolicyUnlessStopped:
		if rec.State.StoppedByUser {
			return false, 0
		}
	case mcontainer.RestartPolicyOnFailure:
		if rec.State.ExitCode == 0 || rec.State.StoppedByUser {
			return false, 0
		}
		if p.MaximumRetryCount > 0 && rec.RestartCount >= p.MaximumRetryCount {
			return false, 0
		}
	default:
		return false, 0
	}
	if rec.State.StoppedByUser && p.Name != mcontainer.RestartPolicyAlways {
		return false, 0
	}
	if rec.State.StoppedByUser {
		// `docker stop` of an always container keeps it stopped until the daemon restarts.
		return false, 0
	}
	return true, backoff(rec.RestartCount, ranFor)
}

func backoff(restarts int, ranFor time.Duration) time.Duration {
	if ranFor >= 10*time.Second {
		return 100 * time.Millisecond
	}
	dl := 100 * time.Millisecond
	for i := 0; i < restarts && dl < time.Minute; i++ {
		dl *= 2
	}
	return min(dl, time.Minute)
}

func (d *Daemon) restartAfter(c *ctr, delay time.Duration, stop chan struct{}) {
	select {
	case <-time.After(delay):
	case <-stop:
		return
	case <-d.ctx.Done():
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopRestart != stop || c.rec.State.Status != mcontainer.StateRestarting {
		return
	}
	c.stopRestart = nil
	if err := d.startLocked(d.ctx, c); err != nil {
		d.log.Warn("restart container", "container", c.rec.ID, "err", err)
		c.rec.State.Status = mcontainer.StateExited
		_ = d.saveCtr(&c.rec)
	} else {
		d.events.Publish(events.ContainerEventType, events.ActionRestart, c.rec.ID, ctrAttrs(&c.rec))
	}
}

// cancelRestart stops a pending restart; c.mu is held.
func (c *ctr) cancelRestart() {
	if c.stopRestart != nil {
		close(c.stopRestart)
		c.stopRestart = nil
		if c.rec.State.Status == mcontainer.StateRestarting {
			c.rec.State.Status = mcontainer.StateExited
		}
	}
}

// primeCgroupsEvery is how often at most primeCgroups starts a migration: one keeps the
// kernel's cgroup_threadgroup_rwsem past its grace period for the moves of the next
// milliseconds, and each takes that lock for writing, which stalls every fork and exit on the
// host meanwhile (a burst of starts would take it twice per container).
const primeCgroupsEvery = 5 * time.Millisecond

// primeCgroups starts a no-op cgroup migration (Runtime.PrimeCgroupMigration) in the
// background, unless one started within primeCgroupsEvery.
func (d *Daemon) primeCgroups() {
	now := time.Now().UnixNano()
	last := d.lastPrime.Load()
	if now-last < int64(primeCgroupsEvery) || !d.lastPrime.CompareAndSwap(last, now) {
		return
	}
	go d.runtime().PrimeCgroupMigration()
}
