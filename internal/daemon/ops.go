package daemon

import (
	"context"
	"fmt"
	"github.com/berth-dev/berth/internal/api"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/runtime/linux"
	"github.com/berth-dev/berth/internal/snapshot"
	"github.com/berth-dev/berth/internal/snapshot/overlay"
	"github.com/containerd/errdefs"
	mcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/sys/signal"
	bolt "go.etcd.io/bbolt"
)

// runtime returns berth's OCI runtime over the state the shims keep. The daemon uses it for
// what needs no stdio: pause, resume, stats, processes, and killing orphans.
func (d *Daemon) runtime() *linux.Runtime {
	var host *linux.Host
	if d.host != nil {
		host = d.host()
	}
	return &linux.Runtime{Root: d.runtimeRoot(), Logger: d.log, Host: host}
}

// parseSignal accepts "TERM", "SIGTERM" or "15".
func parseSignal(s string) (syscall.Signal, error) {
	sig, err := signal.ParseSignal(s)
	if err != nil {
		return 0, invalid(fmt.Errorf("invalid signal %q: %w", s, err))
	}
	return sig, nil
}

// running reports whether the container has a live process; c.mu is held.
func (c *ctr) running() bool {
	s := c.rec.State.Status
	return (s == mcontainer.StateRunning || s == mcontainer.StatePaused) && c.shim != nil
}

// ContainerKill sends a signal (default SIGKILL) to the container's init.
func (d *Daemon) ContainerKill(ctx context.Context, ref, sigName string) error {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return err
	}
	sig := syscall.SIGKILL
	if sigName != "" {
		if sig, err = parseSignal(sigName); err != nil {
			return err
		}
	}
	c.mu.Lock()
	if !c.running() {
		c.mu.Unlock()
		return conflict(fmt.Sprintf("cannot kill container: %s: container %s is not running", ref, c.rec.ID))
	}
	h := c.shim
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM || sig == syscall.SIGINT {
		c.rec.State.StoppedByUser = true
		_ = d.saveCtr(&c.rec)
	}
	paused := c.rec.State.Status == mcontainer.StatePaused
	c.mu.Unlock()
	if err := h.client.Kill(ctx, sig, false); err != nil {
		return fmt.Errorf("kill container %s: %w", ref, err)
	}
	if paused && sig == syscall.SIGKILL {
		_ = d.runtime().Resume(ctx, c.rec.ID)
	}
	attrs := ctrAttrs(&c.rec)
	attrs["signal"] = strconv.Itoa(int(sig))
	d.events.Publish(events.ContainerEventType, events.ActionKill, c.rec.ID, attrs)
	return nil
}

// ContainerStop stops a container gracefully: its stop signal, then SIGKILL after the timeout.
func (d *Daemon) ContainerStop(ctx context.Context, ref, sigName string, timeout *int) error {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return err
	}
	return d.stop(ctx, c, sigName, timeout, true)
}

func (d *Daemon) stop(ctx context.Context, c *ctr, sigName string, timeout *int, byUser bool) error {
	c.mu.Lock()
	if byUser {
		c.rec.State.StoppedByUser = true
		c.cancelRestart()
		_ = d.saveCtr(&c.rec)
	}
	if !c.running() {
		c.mu.Unlock()
		return nil
	}
	if sigName == "" {
		sigName = c.rec.Config.StopSignal
	}
	if sigName == "" {
		sigName = "SIGTERM"
	}
	wait := 10
	if c.rec.Config.StopTimeout != nil {
		wait = *c.rec.Config.StopTimeout
	}
	if timeout != nil {
		wait = *timeout
	}
	h, exited, id := c.shim, c.exited, c.rec.ID
	paused := c.rec.State.Status == mcontainer.StatePaused
	c.mu.Unlock()
	sig, err := parseSignal(sigName)
	if err != nil {
		return err
	}
	if wait != 0 {
		if err := h.client.Kill(ctx, sig, false); err != nil {
			d.log.Debug("stop signal", "container", id, "err", err)
		}
		if paused {
			_ = d.runtime().Resume(ctx, id)
		}
		var expire <-chan time.Time
		if wait > 0 {
			t := time.NewTimer(time.Duration(wait) * time.Second)
			defer t.Stop()
			expire = t.C
		}
		select {
		case <-exited:
			d.events.Publish(events.ContainerEventType, events.ActionStop, id, ctrAttrs(&c.rec))
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-expire:
		}
	}
	if err := h.client.Kill(ctx, syscall.SIGKILL, true); err != nil {
		d.log.Debug("stop kill", "container", id, "err", err)
	}
	if paused {
		_ = d.runtime().Resume(ctx, id)
	}
	select {
	case <-exited:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return fmt.Errorf("container %s did not exit after SIGKILL", id)
	}
	d.events.Publish(events.ContainerEventType, events.ActionStop, id, ctrAttrs(&c.rec))
	return nil
}

// ContainerRestart stops then starts a container.
func (d *Daemon) ContainerRestart(ctx context.Context, ref, sigName string, timeout *int) error {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.restarting = true
	c.mu.Unlock()
	err = d.stop(ctx, c, sigName, timeout, false)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.restarting = false
	if err != nil {
		return err
	}
	c.cancelRestart()
	c.rec.State.StoppedByUser = false
	if c.running() {
		return nil
	}
	if err := d.startLocked(ctx, c); err != nil {
		return err
	}
	d.events.Publish(events.ContainerEventType, events.ActionRestart, c.rec.ID, ctrAttrs(&c.rec))
	return nil
}

// ContainerPause freezes every process of the container.
func (d *Daemon) ContainerPause(ctx context.Context, ref string) error {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !c.running():
		return conflict(fmt.Sprintf("container %s is not running", c.rec.ID))
	case c.rec.State.Status == mcontainer.StatePaused:
		return conflict(fmt.Sprintf("container %s is already paused", c.rec.ID))
	}
	if err := d.runtime().Pause(ctx, c.rec.ID); err != nil {
		return fmt.Errorf("pause %s: %w", ref, err)
	}
	c.rec.State.Status = mcontainer.StatePaused
	_ = d.saveCtr(&c.rec)
	d.events.Publish(events.ContainerEventType, events.ActionPause, c.rec.ID, ctrAttrs(&c.rec))
	return nil
}

// ContainerUnpause thaws a paused container.
func (d *Daemon) ContainerUnpause(ctx context.Context, ref string) error {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rec.State.Status != mcontainer.StatePaused {
		return conflict(fmt.Sprintf("container %s is not paused", c.rec.ID))
	}
	if err := d.runtime().Resume(ctx, c.rec.ID); err != nil {
		return fmt.Errorf("unpause %s: %w", ref, err)
	}
	c.rec.State.Status = mcontainer.StateRunning
	_ = d.saveCtr(&c.rec)
	d.events.Publish(events.ContainerEventType, events.ActionUnPause, c.rec.ID, ctrAttrs(&c.rec))
	return nil
}

// ContainerWait registers a wait for the condition and returns its result channel.
func (d *Daemon) ContainerWait(ctx context.Context, ref string, cond mcontainer.WaitCondition) (<-chan mcontainer.WaitResponse, error) {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return nil, err
	}
	switch cond {
	case "", mcontainer.WaitConditionNotRunning, mcontainer.WaitConditionNextExit, mcontainer.WaitConditionRemoved:
	default:
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid condition: %q (use not-running, next-exit or removed)", cond))
	}
	c.mu.Lock()
	exited, removed := c.exited, c.removed
	live := c.running() || c.rec.State.Status == mcontainer.StateRestarting
	c.mu.Unlock()
	out := make(chan mcontainer.WaitResponse, 1)
	result := func() mcontainer.WaitResponse {
		c.mu.Lock()
		defer c.mu.Unlock()
		r := mcontainer.WaitResponse{StatusCode: int64(c.rec.State.ExitCode)}
		if c.rec.State.Error != "" {
			r.Error = &mcontainer.WaitExitError{Message: c.rec.State.Error}
		}
		return r
	}
	go func() {
		switch cond {
		case mcontainer.WaitConditionRemoved:
			select {
			case <-removed:
			case <-ctx.Done():
				return
			}
		case mcontainer.WaitConditionNextExit:
			select {
			case <-exited:
			case <-removed:
			case <-ctx.Done():
				return
			}
		default:
			if live {
				select {
				case <-exited:
				case <-removed:
				case <-ctx.Done():
					return
				}
			}
		}
		out <- result()
	}()
	return out, nil
}

// awaitRemoval waits for another removal of c to end; if it failed (the container is left
// dead), it removes c itself.
func (d *Daemon) awaitRemoval(ctx context.Context, c *ctr, ref string, removeVolumes bool) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.removed:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			c.mu.Lock()
			removing := c.rec.State.Status == mcontainer.StateRemoving
			c.mu.Unlock()
			if !removing && !c.isRemoved() {
				return d.ContainerRemove(ctx, ref, true, removeVolumes)
			}
		}
	}
}

// ContainerRemove deletes a container and everything berth made for it.
func (d *Daemon) ContainerRemove(ctx context.Context, ref string, force, removeVolumes bool) error {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.rec.State.Status == mcontainer.StateRemoving {
		c.mu.Unlock()
		if force {
			// Forced: the container is going, as asked (a --rm container's own removal).
			return d.awaitRemoval(ctx, c, ref, removeVolumes)
		}
		return conflict(fmt.Sprintf("removal of container %s is already in progress", c.rec.ID))
	}
	// A --rm container's anonymous volumes go with it, whoever removes it.
	removeVolumes = removeVolumes || c.rec.HostConfig.AutoRemove
	if c.running() {
		if !force {
			status := c.rec.State.Status
			c.mu.Unlock()
			return conflict(fmt.Sprintf("cannot remove container %q: container is %s: stop the container before removing or force remove", c.rec.Name, status))
		}
		c.mu.Unlock()
		zero := 0
		if err := d.stop(ctx, c, "SIGKILL", &zero, true); err != nil {
			return fmt.Errorf("kill container %s before removal: %w", ref, err)
		}
		c.mu.Lock()
		// A --rm container removes itself when it dies: that removal may have begun, or
		// ended, while this one waited for the kill.
		if c.rec.State.Status == mcontainer.StateRemoving || c.isRemoved() {
			c.mu.Unlock()
			return d.awaitRemoval(ctx, c, ref, removeVolumes)
		}
	}
	c.cancelRestart()
	defer c.mu.Unlock()
	c.takePremount() // unmounted below
	id := c.rec.ID
	t0 := time.Now()
	phase := func(name string) {
		d.log.Debug("remove phase", "container", id[:12], "phase", name, "at", time.Since(t0))
	}
	c.rec.State.Status = mcontainer.StateRemoving
	// First what the container holds in the kernel, in parallel, since each mostly waits (an
	// unmount for an RCU grace period, the runtime for cgroup removal): its root filesystem
	// mount, its network namespace, its runtime state and cgroups (and any process left).
	// All are gone before its record: a crash in between leaves a record, which the next
	// daemon removes or shows, never kernel objects that nothing knows of.
	netDone := make(chan struct{})
	go func() {
		defer close(netDone)
		d.net.Forget(id)
	}()
	unmounted := make(chan error, 1)
	go func() { unmounted <- snapshot.DetachAll(d.rootfsDir(id)) }()
	// The runtime's state files go with the container's other files, after the reply.
	rtLeft, rtErr := d.runtime().DeleteLater(ctx, id, true)
	<-netDone
	unmountErr := <-unmounted
	if unmountErr != nil {
		d.log.Warn("unmount rootfs", "container", id, "err", unmountErr)
	}
	phase("released")
	rm, err := d.forgetCtr(id)
	if err != nil {
		c.rec.State.Status = mcontainer.StateDead
		_ = d.saveCtr(&c.rec)
		return err
	}
	phase("forgotten")
	// The container's files are garbage now that its record is gone, and deleting them costs
	// milliseconds (every unlink of a file with data may wait for the disk): they are deleted
	// after the reply. The container's directory is renamed aside first, so that it is gone
	// from its place when the reply says the container is. A daemon that stops waits for the
	// deletion (Run, close); one that dies leaves the files to the next, which deletes what no
	// record owns (the snapshotter's Cleanup, cleanStaleDirs). A root filesystem that would not
	// unmount is left in place rather than emptied through its mount.
	dir := d.ctrDir(id)
	if unmountErr == nil {
		aside := filepath.Join(filepath.Dir(dir), "rm-"+id)
		if err := os.Rename(dir, aside); err == nil {
			dir = aside
		}
	}
	d.ctrs.remove(c)
	d.releaseMounts(ctx, &c.rec, removeVolumes)
	close(c.removed)
	d.events.Publish(events.ContainerEventType, events.ActionDestroy, id, ctrAttrs(&c.rec))
	// The directories are reused only once nothing can use them: unmounted, and the runtime
	// removed the cgroup, so no process of the container is left to hold a lazily detached
	// mount of the writable layer.
	reuse := unmountErr == nil && rtErr == nil
	d.bg.Go(func() {
		if reuse {
			rm.Recycle()
		} else {
			rm.Purge()
		}
		_ = os.RemoveAll(d.shimDir(id))
		if rtLeft != "" {
			_ = os.RemoveAll(rtLeft)
		}
		if unmountErr == nil && !(reuse && d.recycleCtrDir(dir)) {
			if err := os.RemoveAll(dir); err != nil {
				d.log.Warn("remove container directory", "container", id, "err", err)
			}
		}
		phase("files removed")
	})
	return nil
}

// forgetCtr deletes a container's writable snapshot and its record in one transaction: one
// commit (two fdatasyncs of the store) where each took one. The snapshot's files are left to
// the caller (Removal.Purge); they are garbage once this returns.
func (d *Daemon) forgetCtr(id string) (*overlay.Removal, error) {
	var rm *overlay.Removal
	err := d.db.Update(func(tx *bolt.Tx) error {
		r, err := d.snap.RemoveTx(tx, snapKey(id))
		if err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove root filesystem of %s: %w", id, err)
		}
		rm = r
		if bk := tx.Bucket(containersBucket); bk != nil {
			if err := bk.Delete([]byte(id)); err != nil {
				return fmt.Errorf("delete container record: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		rm.Rollback()
		return nil, err
	}
	return rm, nil
}

// ContainerRename gives a container a new name.
func (d *Daemon) ContainerRename(ctx context.Context, ref, newName string) error {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return err
	}
	if !validName(newName) {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", newName))
	}
	if !strings.HasPrefix(newName, "/") {
		newName = "/" + newName
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.rec.Name
	if old == newName {
		return errdefs.ErrInvalidArgument.WithMessage("Renaming a container with the same name as its current name")
	}
	if err := d.ctrs.reserveName(newName, c.rec.ID); err != nil {
		return err
	}
	c.rec.Name = newName
	if err := d.saveCtr(&c.rec); err != nil {
		c.rec.Name = old
		d.ctrs.releaseName(newName, c.rec.ID)
		return err
	}
	d.ctrs.releaseName(old, c.rec.ID)
	attrs := ctrAttrs(&c.rec)
	attrs["oldName"] = old
	d.events.Publish(events.ContainerEventType, events.ActionRename, c.rec.ID, attrs)
	return nil
}

// ContainersPrune removes every stopped container.
func (d *Daemon) ContainersPrune(ctx context.Context, filters api.Filters) (mcontainer.PruneReport, error) {
	var rep mcontainer.PruneReport
	until, err := untilFilter(filters)
	if err != nil {
		return rep, err
	}
	for _, c := range d.ctrs.all() {
		c.mu.Lock()
		r := c.rec
		live := c.running() || r.State.Status == mcontainer.StateRestarting
		c.mu.Unlock()
		if live || !matchLabels(r.Config.Labels, filters["label"]) || (!until.IsZero() && r.Created.After(until)) {
			continue
		}
		size := d.rwSize(ctx, r.ID)
		if err := d.ContainerRemove(ctx, r.ID, false, false); err != nil {
			continue
		}
		rep.ContainersDeleted = append(rep.ContainersDeleted, r.ID)
		rep.SpaceReclaimed += uint64(size)
	}
	d.events.Publish(events.ContainerEventType, events.ActionPrune, "", map[string]string{"reclaimed": strconv.FormatUint(rep.SpaceReclaimed, 10)})
	return rep, nil
}

func (d *Daemon) rwSize(ctx context.Context, id string) int64 {
	u, err := d.snap.Usage(ctx, snapKey(id))
	if err != nil {
		return 0
	}
	return u.Size
}

func untilFilter(f api.Filters) (time.Time, error) {
	vals := f["until"]
	if len(vals) == 0 {
		return time.Time{}, nil
	}
	v := vals[0]
	if dur, err := time.ParseDuration(v); err == nil {
		return time.Now().Add(-dur), nil
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Unix(secs, 0), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	return time.Time{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid until filter %q: use a duration (24h), a unix timestamp or RFC 3339", v))
}

// matchLabels applies label filters ("key" or "key=value"; "label!=" negates).
func matchLabels(labels map[string]string, want []string) bool {
	for _, w := range want {
		k, v, hasV := strings.Cut(w, "=")
		got, ok := labels[k]
		if !ok || (hasV && got != v) {
			return false
		}
	}
	return true
}

var _ api.ContainerBackend = (*Daemon)(nil)
