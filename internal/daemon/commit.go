package daemon

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/berth-dev/berth/internal/api"
	"github.com/berth-dev/berth/internal/archive"
	"github.com/berth-dev/berth/internal/image"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	mcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
)

// ContainerCommit makes an image of a container: its image's layers plus one layer with the
// container's changes (the overlay upper dir, whiteouts converted to OCI form), and the
// container's config with the request's overrides and Dockerfile-style changes applied.
// A running container is frozen while its changes are read, unless opts.Pause is false.
func (d *Daemon) ContainerCommit(ctx context.Context, opts api.CommitOptions) (string, error) {
	c, err := d.ctrs.get(opts.Container)
	if err != nil {
		return "", err
	}
	// The lock is held only to read the record and freeze the container: inspect, ps and
	// volume checks must not wait for a long commit. A removal meanwhile makes the read of the
	// changes fail, and the commit with it.
	c.mu.Lock()
	rec := c.rec
	running := c.running()
	paused := rec.State.Status == mcontainer.StatePaused
	if rec.State.Status == mcontainer.StateRemoving || rec.State.Status == mcontainer.StateDead {
		c.mu.Unlock()
		return "", conflict(fmt.Sprintf("cannot commit container %s: it is being removed", rec.ID))
	}
	if opts.Pause && running && !paused {
		if err := d.runtime().Pause(ctx, rec.ID); err != nil {
			c.mu.Unlock()
			return "", fmt.Errorf("pause %s for commit: %w", rec.ID, err)
		}
		defer func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			// A `docker pause` meanwhile keeps it frozen; otherwise thaw what we froze.
			if c.rec.State.Status == mcontainer.StatePaused || !c.running() {
				return
			}
			if err := d.runtime().Resume(context.WithoutCancel(ctx), rec.ID); err != nil {
				d.log.Warn("resume after commit", "container", rec.ID, "err", err)
			}
		}()
	}
	c.mu.Unlock()
	upper, err := d.snap.UpperDir(ctx, snapKey(rec.ID))
	if err != nil {
		return "", fmt.Errorf("changes of %s: %w", rec.ID, err)
	}
	cfg := commitConfig(rec.Config, opts.Config)
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(archive.WriteDiff(ctx, pw, upper))
	}()
	defer pr.Close()
	createdBy := strings.Join(append(slices.Clone(rec.Config.Entrypoint), rec.Config.Cmd...), " ")
	id, err := d.images.Commit(ctx, image.CommitOptions{
		Parent:    rec.Image,
		Layer:     pr,
		Config:    cfg,
		Changes:   opts.Changes,
		Author:    opts.Author,
		Comment:   opts.Comment,
		CreatedBy: createdBy,
		Ref:       opts.Reference,
	})
	if err != nil {
		return "", err
	}
	attrs := ctrAttrs(&rec)
	attrs["comment"] = opts.Comment
	attrs["imageID"] = id
	if opts.Reference != "" {
		attrs["imageRef"] = opts.Reference
	}
	d.events.Publish(events.ContainerEventType, events.ActionCommit, rec.ID, attrs)
	return id, nil
}

// commitConfig is the new image's config: the container's runtime config, with the fields the
// request's config sets replacing it (Docker's merge for commit).
func commitConfig(ctr, override *mcontainer.Config) dockerspec.DockerOCIImageConfig {
	c := *ctr
	if o := override; o != nil {
		if o.User != "" {
			c.User = o.User
		}
		if len(o.Env) > 0 {
			c.Env = o.Env
		}
		if len(o.Cmd) > 0 {
			c.Cmd = o.Cmd
		}
		if len(o.Entrypoint) > 0 {
			c.Entrypoint = o.Entrypoint
		}
		if o.WorkingDir != "" {
			c.WorkingDir = o.WorkingDir
		}
		if len(o.Labels) > 0 {
			c.Labels = maps.Clone(c.Labels)
			if c.Labels == nil {
				c.Labels = map[string]string{}
			}
			maps.Copy(c.Labels, o.Labels)
		}
		if len(o.ExposedPorts) > 0 {
			c.ExposedPorts = o.ExposedPorts
		}
		if len(o.Volumes) > 0 {
			c.Volumes = o.Volumes
		}
		if o.StopSignal != "" {
			c.StopSignal = o.StopSignal
		}
		if o.Healthcheck != nil {
			c.Healthcheck = o.Healthcheck
		}
		if len(o.Shell) > 0 {
			c.Shell = o.Shell
		}
		if len(o.OnBuild) > 0 {
			c.OnBuild = o.OnBuild
		}
	}
	out := dockerspec.DockerOCIImageConfig{}
	out.User = c.User
	out.Env = slices.Clone(c.Env)
	out.Entrypoint = slices.Clone(c.Entrypoint)
	out.Cmd = slices.Clone(c.Cmd)
	out.WorkingDir = c.WorkingDir
	out.Labels = maps.Clone(c.Labels)
	out.StopSignal = c.StopSignal
	out.Shell = slices.Clone(c.Shell)
	out.OnBuild = slices.Clone(c.OnBuild)
	if len(c.Volumes) > 0 {
		out.Volumes = map[string]struct{}{}
		for k := range c.Volumes {
			out.Volumes[k] = struct{}{}
		}
	}
	if len(c.ExposedPorts) > 0 {
		out.ExposedPorts = map[string]struct{}{}
		for p := range c.ExposedPorts {
			out.ExposedPorts[p.String()] = struct{}{}
		}
	}
	if h := c.Healthcheck; h != nil {
		out.Healthcheck = &dockerspec.HealthcheckConfig{
			Test: slices.Clone(h.Test), Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, StartInterval: h.StartInterval, Retries: h.Retries,
		}
	}
	return out
}
