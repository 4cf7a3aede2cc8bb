package daemon

import (
	"context"
	"fmt"
	"github.com/berth-dev/berth/internal/api"
	"path/filepath"
	"slices"
	"strings"
	"time"

	units "github.com/docker/go-units"
	mcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/storage"
)

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// dockerState renders the persisted state in Docker's shape.
func dockerState(s ctrState) *mcontainer.State {
	return &mcontainer.State{
		Status:     s.Status,
		Running:    s.Status == mcontainer.StateRunning || s.Status == mcontainer.StatePaused,
		Paused:     s.Status == mcontainer.StatePaused,
		Restarting: s.Status == mcontainer.StateRestarting,
		OOMKilled:  s.OOMKilled,
		Dead:       s.Status == mcontainer.StateDead,
		Pid:        s.Pid,
		ExitCode:   s.ExitCode,
		Error:      s.Error,
		StartedAt:  fmtTime(s.StartedAt),
		FinishedAt: fmtTime(s.FinishedAt),
	}
}

// snapshotOf copies a container's record under its lock.
func (c *ctr) snapshotOf() ctrRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec
}

// ContainerInspect returns Docker's inspect shape.
func (d *Daemon) ContainerInspect(ctx context.Context, ref string, size bool) (mcontainer.InspectResponse, error) {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return mcontainer.InspectResponse{}, err
	}
	r := c.snapshotOf()
	path, args := "", []string{}
	all := append(slices.Clone(r.Config.Entrypoint), r.Config.Cmd...)
	if len(all) > 0 {
		path, args = all[0], all[1:]
	}
	dir := d.ctrDir(r.ID)
	resp := mcontainer.InspectResponse{
		ID:             r.ID,
		Created:        fmtTime(r.Created),
		Path:           path,
		Args:           args,
		State:          dockerState(r.State),
		Image:          r.Image,
		ResolvConfPath: filepath.Join(dir, "resolv.conf"),
		HostnamePath:   filepath.Join(dir, "hostname"),
		HostsPath:      filepath.Join(dir, "hosts"),
		LogPath:        d.logPath(r.ID),
		Name:           r.Name,
		RestartCount:   r.RestartCount,
		Driver:         "overlay2",
		Platform:       "linux",
		HostConfig:     r.HostConfig,
		Config:         r.Config,
		Mounts:         dockerMounts(r.Mounts),
		GraphDriver: &storage.DriverData{Name: "overlay2", Data: map[string]string{
			"MergedDir": d.rootfsDir(r.ID),
		}},
		NetworkSettings: d.networkSettings(&r),
	}
	if size {
		rw := d.rwSize(ctx, r.ID)
		resp.SizeRw = &rw
	}
	return resp, nil
}

// ContainerList lists containers, newest first, with Docker's filters.
func (d *Daemon) ContainerList(ctx context.Context, all bool, limit int, size bool, filters api.Filters) ([]mcontainer.Summary, error) {
	for k := range filters {
		switch k {
		case "id", "name", "label", "status", "ancestor", "exited", "before", "since", "network", "health", "is-task", "volume", "publish", "expose":
		default:
			return nil, invalid(fmt.Errorf("invalid filter %q", k))
		}
	}
	recs := make([]ctrRecord, 0)
	for _, c := range d.ctrs.all() {
		recs = append(recs, c.snapshotOf())
	}
	slices.SortFunc(recs, func(a, b ctrRecord) int { return b.Created.Compare(a.Created) })
	if len(filters["status"]) > 0 || len(filters["exited"]) > 0 {
		all = true
	}
	before, since, err := d.beforeSince(filters)
	if err != nil {
		return nil, err
	}
	var out []mcontainer.Summary
	for _, r := range recs {
		running := r.State.Status == mcontainer.StateRunning || r.State.Status == mcontainer.StatePaused || r.State.Status == mcontainer.StateRestarting
		if !all && !running {
			continue
		}
		if !before.IsZero() && !r.Created.Before(before) {
			continue
		}
		if !since.IsZero() && !r.Created.After(since) {
			continue
		}
		if !d.matchCtr(ctx, &r, filters) {
			continue
		}
		out = append(out, d.summary(ctx, &r, size))
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	if out == nil {
		out = []mcontainer.Summary{}
	}
	return out, nil
}

func (d *Daemon) beforeSince(filters api.Filters) (before, since time.Time, err error) {
	for _, k := range []string{"before", "since"} {
		for _, v := range filters[k] {
			c, gerr := d.ctrs.get(v)
			if gerr != nil {
				return before, since, gerr
			}
			t := c.snapshotOf().Created
			if k == "before" {
				before = t
			} else {
				since = t
			}
		}
	}
	return before, since, nil
}

func (d *Daemon) matchCtr(ctx context.Context, r *ctrRecord, f api.Filters) bool {
	anyOf := func(vals []string, ok func(string) bool) bool {
		if len(vals) == 0 {
			return true
		}
		for _, v := range vals {
			if ok(v) {
				return true
			}
		}
		return false
	}
	name := strings.TrimPrefix(r.Name, "/")
	return anyOf(f["id"], func(v string) bool { return strings.HasPrefix(r.ID, v) }) &&
		anyOf(f["name"], func(v string) bool { return strings.Contains(name, strings.TrimPrefix(v, "/")) }) &&
		anyOf(f["status"], func(v string) bool { return string(r.State.Status) == v }) &&
		anyOf(f["exited"], func(v string) bool {
			return r.State.Status == mcontainer.StateExited && fmt.Sprint(r.State.ExitCode) == v
		}) &&
		anyOf(f["ancestor"], func(v string) bool {
			if r.ImageRef == v || strings.HasPrefix(strings.TrimPrefix(r.Image, "sha256:"), strings.TrimPrefix(v, "sha256:")) {
				return true
			}
			img, err := d.images.ImageInspect(ctx, v)
			return err == nil && img.ID == r.Image
		}) &&
		anyOf(f["volume"], func(v string) bool { return usesVolume(r, v) }) &&
		anyOf(f["network"], func(v string) bool { return d.onNetwork(r, v) }) &&
		matchLabels(r.Config.Labels, f["label"])
}

func (d *Daemon) summary(ctx context.Context, r *ctrRecord, size bool) mcontainer.Summary {
	all := append(slices.Clone(r.Config.Entrypoint), r.Config.Cmd...)
	s := mcontainer.Summary{
		ID:      r.ID,
		Names:   []string{r.Name},
		Image:   r.ImageRef,
		ImageID: r.Image,
		Command: strings.Join(all, " "),
		Created: r.Created.Unix(),
		Ports:   d.portSummary(r),
		Labels:  r.Config.Labels,
		State:   r.State.Status,
		Status:  statusText(r.State),
		Mounts:  dockerMounts(r.Mounts),
		NetworkSettings: &mcontainer.NetworkSettingsSummary{
			Networks: d.networkSettings(r).Networks,
		},
	}
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	s.HostConfig.NetworkMode = string(r.HostConfig.NetworkMode)
	if size {
		s.SizeRw = d.rwSize(ctx, r.ID)
	}
	return s
}

// statusText is `docker ps`'s STATUS column: "Up 2 minutes", "Exited (0) 3 seconds ago".
func statusText(s ctrState) string {
	switch s.Status {
	case mcontainer.StateRunning:
		return "Up " + units.HumanDuration(time.Since(s.StartedAt))
	case mcontainer.StatePaused:
		return "Up " + units.HumanDuration(time.Since(s.StartedAt)) + " (Paused)"
	case mcontainer.StateRestarting:
		return fmt.Sprintf("Restarting (%d) %s ago", s.ExitCode, units.HumanDuration(time.Since(s.FinishedAt)))
	case mcontainer.StateExited:
		return fmt.Sprintf("Exited (%d) %s ago", s.ExitCode, units.HumanDuration(time.Since(s.FinishedAt)))
	case mcontainer.StateCreated:
		return "Created"
	case mcontainer.StateRemoving:
		return "Removal In Progress"
	case mcontainer.StateDead:
		return "Dead"
	}
	return string(s.Status)
}
