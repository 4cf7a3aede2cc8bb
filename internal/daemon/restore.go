package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/internal/shim"
	"github.com/berth-dev/berth/internal/snapshot"
	mcontainer "github.com/moby/moby/api/types/container"
)

// restoreContainers rebuilds the container table from the store and reconciles each record
// with what the shims and the kernel say: containers whose shim still runs are reconnected;
// exits that happened while the daemon was down are recorded from the shims' exit files;
// restart policies are applied as at any exit. Nothing a user ran is stopped.
func (d *Daemon) restoreContainers(ctx context.Context) error {
	recs, err := d.loadCtrs()
	if err != nil {
		return err
	}
	var toStart []*ctr
	for _, r := range recs {
		c := &ctr{rec: r, exited: make(chan struct{}), removed: make(chan struct{})}
		d.ctrs.add(c)
		switch r.State.Status {
		case mcontainer.StateRunning, mcontainer.StatePaused:
			h := &shimHandle{dir: d.shimDir(r.ID), client: shim.NewClient(d.shimDir(r.ID))}
			st, err := h.client.State(ctx)
			switch {
			case err == nil && st.State != "exited":
				c.shim = h
				d.log.Info("reconnected to running container", "container", r.ID[:12], "pid", st.Pid)
				go d.monitor(c, h, r.Generation)
			case err == nil:
				c.shim = h
				d.log.Info("container exited while the daemon was down", "container", r.ID[:12], "exitCode", st.ExitCode)
				d.handleExit(c, r.Generation, st)
			default:
				if !errors.Is(err, shim.ErrShimGone) {
					d.log.Warn("container shim unreadable", "container", r.ID[:12], "err", err)
				}
				d.killOrphan(r.ID)
				c.shim = h
				d.handleExit(c, r.Generation, shim.Status{State: "exited", ExitCode: 255, ExitedAt: time.Now().UTC()})
			}
		case mcontainer.StateCreated:
			d.restoreCutStart(ctx, c)
		case mcontainer.StateRestarting:
			c.rec.State.Status = mcontainer.StateExited
			toStart = append(toStart, c)
		case mcontainer.StateRemoving, mcontainer.StateDead:
			// A removal that a crash interrupted: finish it.
			go func() {
				if err := d.ContainerRemove(context.WithoutCancel(ctx), r.ID, true, false); err != nil {
					d.log.Warn("finish interrupted removal", "container", r.ID[:12], "err", err)
				}
			}()
		case mcontainer.StateExited:
			// A start of a stopped container (docker start, restart, a restart policy) that the
			// daemon's death cut short leaves the record exited and may leave a shim: its
			// container runs, or waits for Start, where nothing sees it.
			if d.restoreCutStart(ctx, c) {
				continue
			}
			p := r.HostConfig.RestartPolicy.Name
			if p == mcontainer.RestartPolicyAlways || (p == mcontainer.RestartPolicyUnlessStopped && !r.State.StoppedByUser) {
				toStart = append(toStart, c)
			}
		}
	}
	for _, c := range toStart {
		c.mu.Lock()
		c.rec.State.StoppedByUser = false
		if err := d.startLocked(d.ctx, c); err != nil {
			d.log.Warn("restart container at daemon start", "container", c.rec.ID[:12], "err", err)
		}
		c.mu.Unlock()
	}
	d.cleanStaleDirs()
	d.sweepInitLayers(ctx)
	return nil
}

// restoreCutStart reconciles a created or exited container with what a start cut short by the
// daemon's death may have left, and reports whether it adopted the container. A container that
// got as far as running is adopted as started (its start was not answered, but nothing a user
// ran is stopped); otherwise what the start set up is taken down (the runtime's container and
// the shim waiting to start it, the root filesystem mount; the network namespace goes with
// reconcileNetworks) and the record stays as it was.
func (d *Daemon) restoreCutStart(ctx context.Context, c *ctr) bool {
	id := c.rec.ID
	h := &shimHandle{dir: d.shimDir(id), client: shim.NewClient(d.shimDir(id))}
	if st, err := h.client.State(ctx); err == nil && st.State == "running" {
		c.rec.Generation++
		c.rec.State = ctrState{Status: mcontainer.StateRunning, Pid: st.Pid, StartedAt: time.Now().UTC()}
		c.shim = h
		if err := d.saveCtr(&c.rec); err != nil {
			d.log.Warn("save adopted container", "container", id[:12], "err", err)
		}
		d.log.Info("adopted a container whose start was cut short", "container", id[:12], "pid", st.Pid)
		go d.monitor(c, h, c.rec.Generation)
		return true
	}
	d.killOrphan(id)
	if err := snapshot.UnmountAll(d.rootfsDir(id)); err != nil {
		d.log.Warn("unmount root filesystem of stopped container", "container", id[:12], "err", err)
	}
	_ = os.RemoveAll(d.shimDir(id))
	return false
}

// cleanStaleDirs removes the shim and container directories of containers that no longer
// exist: a removal deletes them after its reply (ContainerRemove), and a daemon that died
// before that left them. It runs before the API serves, so no container is being created.
func (d *Daemon) cleanStaleDirs() {
	d.runtime().SweepGone()
	live := map[string]bool{}
	for _, c := range d.ctrs.all() {
		id := c.snapshotOf().ID
		live[d.shimDir(id)] = true
		live[d.ctrDir(id)] = true
	}
	ents, _ := os.ReadDir(filepath.Join(d.cfg.ExecRoot, "shims"))
	for _, e := range ents {
		if p := filepath.Join(d.cfg.ExecRoot, "shims", e.Name()); !live[p] {
			_ = os.RemoveAll(p)
		}
	}
	ents, _ = os.ReadDir(filepath.Join(d.cfg.Root, "containers"))
	for _, e := range ents {
		p := filepath.Join(d.cfg.Root, "containers", e.Name())
		if live[p] {
			continue
		}
		// Never delete through a mount: a root filesystem still mounted is unmounted first,
		// and left alone if that fails.
		if err := snapshot.UnmountAll(filepath.Join(p, "rootfs")); err != nil {
			d.log.Warn("stale container directory", "dir", p, "err", err)
			continue
		}
		d.log.Info("removing stale container directory", "dir", p)
		if err := os.RemoveAll(p); err != nil {
			d.log.Warn("remove stale container directory", "dir", p, "err", err)
		}
	}
}

// inUse reports whether any container uses the image, for rmi and prune.
func (d *Daemon) inUse(imageID string) bool {
	for _, c := range d.ctrs.all() {
		if c.snapshotOf().Image == imageID {
			return true
		}
	}
	return false
}
