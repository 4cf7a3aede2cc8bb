package daemon

import (
	"time"

	mcontainer "github.com/moby/moby/api/types/container"

	"github.com/berth-dev/berth/internal/snapshot"
)

// premountExpiry is how long a root filesystem mounted ahead of a start stays mounted when no
// start comes (a `docker create` on its own): a created container then holds no mount, as in
// Docker.
const premountExpiry = 5 * time.Second

// premount is a container's root filesystem mounted right after its create, while the client
// (`docker run`) prepares the start: ~1 ms between the create's answer and the start's arrival,
// and a mount costs 1-4 ms (on ext4 without a journal, overlayfs's work-directory checks
// allocate inodes, which is slow after many deletions).
type premount struct {
	done chan struct{}
	err  error // the mount's outcome, once done is closed
}

// startPremount mounts c's root filesystem in the background; c.mu is held or c is not shared
// yet. The start takes the mount (takePremount); if none comes, the expiry unmounts it.
func (d *Daemon) startPremount(c *ctr) {
	rec := &c.rec
	chainID, mounts := rec.ChainID, c.mounts
	rootfs, autoRemove, id := d.rootfsDir(rec.ID), rec.HostConfig.AutoRemove, rec.ID
	p := &premount{done: make(chan struct{})}
	c.premount = p
	go func() {
		defer close(p.done)
		// The image's init layer too is made here, on an image's first container.
		mounts := d.withInitLayer(chainID, mounts)
		_ = snapshot.UnmountAll(rootfs)
		p.err = mountRootfs(mounts, rootfs, autoRemove, d.bootID)
	}()
	time.AfterFunc(d.premountTTL, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.premount != p {
			return // taken
		}
		<-p.done
		c.premount = nil
		if c.rec.State.Status == mcontainer.StateCreated && c.shim == nil {
			if err := snapshot.UnmountAll(rootfs); err != nil {
				d.log.Warn("unmount root filesystem mounted ahead of a start", "container", id, "err", err)
			}
		}
	})
}

// takePremount waits for c's premount, if there is one, and reports whether the root
// filesystem is mounted by it; c.mu is held. A failed premount leaves nothing mounted: the
// caller mounts (again) and reports its own error.
func (c *ctr) takePremount() bool {
	p := c.premount
	if p == nil {
		return false
	}
	c.premount = nil
	<-p.done
	return p.err == nil
}

// dropPremounts unmounts the root filesystems mounted ahead of starts that did not come, for a
// daemon that stops: a created container holds no mount.
func (d *Daemon) dropPremounts() {
	for _, c := range d.ctrs.all() {
		c.mu.Lock()
		if c.takePremount() && c.rec.State.Status == mcontainer.StateCreated && c.shim == nil {
			_ = snapshot.UnmountAll(d.rootfsDir(c.rec.ID))
		}
		c.mu.Unlock()
	}
}
