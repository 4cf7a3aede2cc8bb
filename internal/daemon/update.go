package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berth-dev/berth/internal/container"
	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	mcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ContainerUpdate changes a container's resource limits (live, in its cgroup, when it runs)
// and restart policy; the new values are kept for later starts.
func (d *Daemon) ContainerUpdate(ctx context.Context, ref string, u mcontainer.UpdateConfig) (mcontainer.UpdateResponse, error) {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return mcontainer.UpdateResponse{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	hc := clone(c.rec.HostConfig)
	r := &hc.Resources
	n := u.Resources
	if n.Memory != 0 {
		r.Memory = n.Memory
		if n.MemorySwap == 0 && r.MemorySwap > 0 && r.MemorySwap < n.Memory {
			// Docker: raising --memory above the old swap limit needs a new swap limit too.
			return mcontainer.UpdateResponse{}, invalid(fmt.Errorf("memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time"))
		}
	}
	if n.MemorySwap != 0 {
		r.MemorySwap = n.MemorySwap
	}
	if n.MemoryReservation != 0 {
		r.MemoryReservation = n.MemoryReservation
	}
	if n.NanoCPUs != 0 {
		r.NanoCPUs, r.CPUQuota, r.CPUPeriod = n.NanoCPUs, 0, 0
	}
	if n.CPUQuota != 0 {
		r.CPUQuota = n.CPUQuota
	}
	if n.CPUPeriod != 0 {
		r.CPUPeriod = n.CPUPeriod
	}
	if n.CPUShares != 0 {
		r.CPUShares = n.CPUShares
	}
	if n.CpusetCpus != "" {
		r.CpusetCpus = n.CpusetCpus
	}
	if n.CpusetMems != "" {
		r.CpusetMems = n.CpusetMems
	}
	if n.PidsLimit != nil {
		r.PidsLimit = n.PidsLimit
	}
	if n.BlkioWeight != 0 {
		r.BlkioWeight = n.BlkioWeight
	}
	if u.RestartPolicy.Name != "" {
		if hc.AutoRemove && u.RestartPolicy.Name != mcontainer.RestartPolicyDisabled {
			return mcontainer.UpdateResponse{}, invalid(fmt.Errorf("restart policy cannot be updated because AutoRemove is enabled for the container"))
		}
		hc.RestartPolicy = u.RestartPolicy
	}
	if err := validateHostConfig(hc); err != nil {
		return mcontainer.UpdateResponse{}, invalid(err)
	}
	if c.running() {
		res := container.Resources(r)
		if r.MemorySwap == 0 && r.Memory > 0 {
			// Keep the default (swap = memory) consistent with the new limit.
			res.Memory.Swap = ptrTo(2 * r.Memory)
		}
		if err := updateCgroup(filepath.Join(d.cgroupParent(), c.rec.ID), res); err != nil {
			return mcontainer.UpdateResponse{}, fmt.Errorf("update cgroup of %s: %w", c.rec.ID, err)
		}
	}
	c.rec.HostConfig = hc
	if err := d.saveCtr(&c.rec); err != nil {
		return mcontainer.UpdateResponse{}, err
	}
	d.events.Publish(events.ContainerEventType, events.ActionUpdate, c.rec.ID, ctrAttrs(&c.rec))
	return mcontainer.UpdateResponse{Warnings: []string{}}, nil
}

func ptrTo[T any](v T) *T { return &v }

// updateCgroup applies resources to the cgroup at path (relative to the hierarchy roots), on
// v2 or on every mounted v1 controller.
func updateCgroup(path string, res *specs.LinuxResources) error {
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.Load(path)
		if err != nil {
			return err
		}
		return m.Update(cgroup2.ToResources(res))
	}
	present := func() ([]cgroup1.Subsystem, error) {
		all, err := cgroup1.Default()
		if err != nil {
			return nil, err
		}
		var out []cgroup1.Subsystem
		for _, s := range all {
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", string(s.Name()), path)); err == nil {
				out = append(out, s)
			}
		}
		return out, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path), cgroup1.WithHierarchy(present))
	if err != nil {
		return err
	}
	return cg.Update(res)
}
