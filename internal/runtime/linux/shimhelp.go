package linux

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/containerd/errdefs"
)

// ShimFiles are the files of a created container that the shim's C steady state watches
// itself, without the runtime: it runs no Go code and cannot call Start or OOMKilled.
type ShimFiles struct {
	// ExecFifo is the fifo on which the init waits for Start (see Start and awaitFifo).
	ExecFifo string
	// OOMCounter is the cgroup file with the container's "oom_kill N" line (v2 memory.events,
	// v1 memory.oom_control), as OOMKilled reads it; empty without a memory controller.
	OOMCounter string
}

// ShimFiles returns the files the shim's steady state needs for container id.
func (r *Runtime) ShimFiles(id string) (ShimFiles, error) {
	st, err := r.load(id)
	if err != nil {
		return ShimFiles{}, err
	}
	f := ShimFiles{ExecFifo: r.fifoPath(id)}
	if st.Cgroup.V2 != "" {
		f.OOMCounter = filepath.Join(st.Cgroup.v2Dir(), "memory.events")
	} else if d := st.Cgroup.v1Dir("memory"); d != "" {
		f.OOMCounter = filepath.Join(d, "memory.oom_control")
	}
	return f, nil
}

// DeleteInit is Delete(force) for a shim that outlives its container: it deletes id only while
// the runtime's state still names the init with host PID pid. The daemon deletes exited
// containers too and may already have created a new container under the same id, which a
// late shim must not touch.
func (r *Runtime) DeleteInit(ctx context.Context, id string, pid int) error {
	st, err := r.load(id)
	if err != nil {
		if errors.Is(err, errCorruptState) || errdefs.IsNotFound(err) {
			return nil // deleted already, or not ours to judge: the daemon's Delete handles it
		}
		return err
	}
	if st.Pid != pid {
		return fmt.Errorf("container %s now has init %d, not %d: left alone", id, st.Pid, pid)
	}
	return r.Delete(ctx, id, true)
}
