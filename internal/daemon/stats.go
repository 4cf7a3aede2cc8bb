package daemon

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	mcontainer "github.com/moby/moby/api/types/container"
	"golang.org/x/sys/unix"
)

// systemCPUNanos is the host's total CPU time in nanoseconds, from /proc/stat, as Docker
// reports system_cpu_usage (the CLI computes CPU % from its deltas).
func systemCPUNanos() uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && f[0] == "cpu" {
			var ticks uint64
			for _, v := range f[1:] {
				n, _ := strconv.ParseUint(v, 10, 64)
				ticks += n
			}
			// USER_HZ is 100 on Linux.
			return ticks * (1e9 / 100)
		}
	}
	return 0
}

func hostMemory() uint64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0
	}
	return uint64(si.Totalram) * uint64(si.Unit)
}

// ContainerStats reports resource usage once, or every second while ctx lasts.
func (d *Daemon) ContainerStats(ctx context.Context, ref string, stream bool, emit func(mcontainer.StatsResponse) error) error {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return err
	}
	var prev mcontainer.StatsResponse
	for {
		r := c.snapshotOf()
		s := mcontainer.StatsResponse{ID: r.ID, Name: r.Name, OSType: "linux", Read: time.Now().UTC(), PreRead: prev.Read}
		s.PreCPUStats = prev.CPUStats
		if r.State.Status == mcontainer.StateRunning || r.State.Status == mcontainer.StatePaused {
			st, err := d.runtime().Stats(ctx, r.ID)
			if err == nil {
				s.CPUStats = mcontainer.CPUStats{
					CPUUsage:    mcontainer.CPUUsage{TotalUsage: st.CPUUsageNS},
					SystemUsage: systemCPUNanos(),
					OnlineCPUs:  uint32(runtime.NumCPU()),
				}
				limit := st.MemoryLimit
				if host := hostMemory(); limit == 0 || (host > 0 && limit > host) {
					// No limit: Docker reports the host's memory.
					limit = host
				}
				s.MemoryStats = mcontainer.MemoryStats{Usage: st.MemoryUsage, Limit: limit}
				s.PidsStats = mcontainer.PidsStats{Current: st.Pids}
				if r.HostConfig.PidsLimit != nil && *r.HostConfig.PidsLimit > 0 {
					s.PidsStats.Limit = uint64(*r.HostConfig.PidsLimit)
				}
			}
		}
		if err := emit(s); err != nil {
			return err
		}
		if !stream {
			return nil
		}
		prev = s
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// ContainerTop lists the container's processes with ps, as Docker does: host ps output
// filtered to the container's PIDs.
func (d *Daemon) ContainerTop(ctx context.Context, ref, psArgs string) (mcontainer.TopResponse, error) {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return mcontainer.TopResponse{}, err
	}
	r := c.snapshotOf()
	if r.State.Status != mcontainer.StateRunning && r.State.Status != mcontainer.StatePaused {
		return mcontainer.TopResponse{}, conflict(fmt.Sprintf("container %s is not running", r.ID))
	}
	pids, err := d.runtime().Ps(ctx, r.ID)
	if err != nil {
		return mcontainer.TopResponse{}, fmt.Errorf("list processes of %s: %w", r.ID, err)
	}
	if psArgs == "" {
		psArgs = "-ef"
	}
	if strings.ContainsAny(psArgs, "`$;&|<>") {
		return mcontainer.TopResponse{}, invalid(fmt.Errorf("invalid ps arguments %q", psArgs))
	}
	out, err := exec.CommandContext(ctx, "ps", strings.Fields(psArgs)...).Output()
	if err != nil {
		return mcontainer.TopResponse{}, invalid(fmt.Errorf("ps %s failed: %w", psArgs, err))
	}
	return parsePS(string(out), pids)
}

// parsePS keeps the rows of ps output whose PID column is one of pids.
func parsePS(out string, pids []int) (mcontainer.TopResponse, error) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 {
		return mcontainer.TopResponse{}, fmt.Errorf("ps printed nothing")
	}
	titles := strings.Fields(lines[0])
	pidCol := -1
	for i, t := range titles {
		if t == "PID" {
			pidCol = i
			break
		}
	}
	if pidCol < 0 {
		return mcontainer.TopResponse{}, invalid(fmt.Errorf("ps output has no PID column; include it in the ps arguments"))
	}
	want := map[int]bool{}
	for _, p := range pids {
		want[p] = true
	}
	resp := mcontainer.TopResponse{Titles: titles, Processes: [][]string{}}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) <= pidCol {
			continue
		}
		p, err := strconv.Atoi(f[pidCol])
		if err != nil || !want[p] {
			continue
		}
		// The last column (CMD) may contain spaces: join the rest.
		if len(f) > len(titles) {
			f = append(f[:len(titles)-1], strings.Join(f[len(titles)-1:], " "))
		}
		resp.Processes = append(resp.Processes, f)
	}
	return resp, nil
}
