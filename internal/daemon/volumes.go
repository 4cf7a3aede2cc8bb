package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/berth-dev/berth/internal/api"
	"github.com/berth-dev/berth/internal/archive"
	"github.com/berth-dev/berth/internal/volume"
	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	mcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/mount"
	mvolume "github.com/moby/moby/api/types/volume"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// mountPoint is one resolved mount of a container, persisted with its record: volumes are
// created (or found) at create time, so start only has to turn these into OCI mounts.
type mountPoint struct {
	Type        mount.Type        `json:"type"`
	Name        string            `json:"name,omitempty"`   // volume name
	Source      string            `json:"source,omitempty"` // host path (bind) or the volume's _data
	Destination string            `json:"destination"`
	RW          bool              `json:"rw"`
	Mode        string            `json:"mode,omitempty"` // -v mode as given, for inspect
	Propagation mount.Propagation `json:"propagation,omitempty"`
	// CopyData fills an empty volume from the image's content at Destination (not nocopy).
	CopyData bool `json:"copyData,omitempty"`
	// Anonymous volumes go away with `rm -v` and `--rm`.
	Anonymous bool `json:"anonymous,omitempty"`
	// CreateSource creates a missing bind source (-v), where --mount refuses it.
	CreateSource bool        `json:"createSource,omitempty"`
	NonRecursive bool        `json:"nonRecursive,omitempty"`
	TmpfsSize    int64       `json:"tmpfsSize,omitempty"`
	TmpfsMode    os.FileMode `json:"tmpfsMode,omitempty"`
}

// createMounts resolves a new container's mounts: --volumes-from, then the image's and -v's
// anonymous volumes (Config.Volumes), then -v binds and volumes (HostConfig.Binds) and --mount
// (HostConfig.Mounts); a later source replaces an earlier one at the same destination, and the
// same destination twice among -v and --mount is an error, as in Docker. Missing volumes are
// created. The volumes are pinned until the caller calls release (after the container is in
// the index, where volumeUsers finds it); undo removes the anonymous volumes it created.
func (d *Daemon) createMounts(ctx context.Context, cfg *mcontainer.Config, hc *mcontainer.HostConfig) (mps []mountPoint, release, undo func(), err error) {
	byDst := map[string]mountPoint{}
	var order []string
	set := func(mp mountPoint) {
		mp.Destination = path.Clean(mp.Destination)
		if _, ok := byDst[mp.Destination]; !ok {
			order = append(order, mp.Destination)
		}
		byDst[mp.Destination] = mp
	}
	for _, vf := range hc.VolumesFrom {
		ref, mode, err := volume.ParseVolumesFrom(vf)
		if err != nil {
			return nil, nil, nil, invalid(err)
		}
		src, err := d.ctrs.get(ref)
		if err != nil {
			return nil, nil, nil, err
		}
		for _, mp := range src.snapshotOf().Mounts {
			if mp.Type == mount.TypeTmpfs {
				continue
			}
			switch mode {
			case "ro":
				mp.RW = false
			case "rw":
				mp.RW = true
			}
			mp.CreateSource = false
			set(mp)
		}
	}
	for dst := range cfg.Volumes {
		if err := checkDestination(dst); err != nil {
			return nil, nil, nil, invalid(fmt.Errorf("invalid volume %q (VOLUME or -v): %w", dst, err))
		}
		if _, ok := byDst[path.Clean(dst)]; ok {
			continue // --volumes-from gave it already
		}
		set(mountPoint{Type: mount.TypeVolume, Destination: dst, RW: true, CopyData: true, Anonymous: true})
	}
	explicit := map[string]bool{}
	claim := func(dst string) error {
		dst = path.Clean(dst)
		if explicit[dst] {
			return invalid(fmt.Errorf("duplicate mount point: %s", dst))
		}
		explicit[dst] = true
		return nil
	}
	newLabels := map[string]map[string]string{} // labels for volumes --mount creates
	for _, b := range hc.Binds {
		s, err := volume.ParseVolumeFlag(b)
		if err != nil {
			return nil, nil, nil, invalid(err)
		}
		if err := claim(s.Target); err != nil {
			return nil, nil, nil, err
		}
		mp := mountPoint{Type: s.Type, Destination: s.Target, RW: !s.ReadOnly, Mode: s.Mode, CreateSource: s.CreateSource}
		if s.BindOptions != nil {
			mp.Propagation = s.BindOptions.Propagation
		}
		switch s.Type {
		case mount.TypeBind:
			mp.Source = s.Source
		case mount.TypeVolume:
			mp.Name = s.Source
			mp.Anonymous = s.Source == ""
			mp.CopyData = s.VolumeOptions == nil || !s.VolumeOptions.NoCopy
		}
		set(mp)
	}
	for _, m := range hc.Mounts {
		if err := volume.ValidateMount(m); err != nil {
			return nil, nil, nil, invalid(err)
		}
		if err := claim(m.Target); err != nil {
			return nil, nil, nil, err
		}
		mp := mountPoint{Type: m.Type, Destination: m.Target, RW: !m.ReadOnly}
		switch m.Type {
		case mount.TypeBind:
			mp.Source = path.Clean(m.Source)
			if bo := m.BindOptions; bo != nil {
				mp.Propagation, mp.NonRecursive, mp.CreateSource = bo.Propagation, bo.NonRecursive, bo.CreateMountpoint
			}
		case mount.TypeVolume:
			mp.Name = m.Source
			mp.Anonymous = m.Source == ""
			mp.CopyData = true
			if vo := m.VolumeOptions; vo != nil {
				mp.CopyData = !vo.NoCopy
				if vo.DriverConfig != nil && len(vo.DriverConfig.Options) > 0 {
					return nil, nil, nil, errdefs.ErrNotImplemented.WithMessage("--mount volume-opt: local volume options are not supported by berth yet")
				}
				if mp.Name != "" && len(vo.Labels) > 0 {
					newLabels[mp.Name] = vo.Labels
				}
			}
		case mount.TypeTmpfs:
			if to := m.TmpfsOptions; to != nil {
				mp.TmpfsSize, mp.TmpfsMode = to.SizeBytes, to.Mode
			}
		}
		set(mp)
	}
	for _, dst := range order {
		if dst == "/" {
			return nil, nil, nil, invalid(errors.New("invalid mount: the destination cannot be \"/\""))
		}
	}

	var pinned, created []string
	release = func() {
		for _, n := range pinned {
			d.volumes.Unpin(n)
		}
		pinned = nil
	}
	undo = func() {
		release()
		for _, n := range created {
			if err := d.volumes.Remove(context.WithoutCancel(ctx), n, true); err != nil {
				d.log.Warn("remove volume of failed create", "volume", n, "err", err)
			}
		}
	}
	for _, dst := range order {
		mp := byDst[dst]
		if mp.Type == mount.TypeVolume {
			v, isNew, err := d.volumes.Create(ctx, volume.CreateOptions{Name: mp.Name, Labels: newLabels[mp.Name], Anonymous: mp.Name == ""}, true)
			if err != nil {
				undo()
				return nil, nil, nil, err
			}
			pinned = append(pinned, v.Name)
			if isNew {
				if mp.Name == "" {
					created = append(created, v.Name)
				}
				d.events.Publish(events.VolumeEventType, events.ActionCreate, v.Name, map[string]string{"driver": v.Driver})
			}
			mp.Name = v.Name
			mp.Source = d.volumes.Path(v.Name)
			mp.Anonymous = v.Anonymous
		}
		mps = append(mps, mp)
	}
	sortMounts(mps)
	return mps, release, undo, nil
}

func checkDestination(dst string) error {
	if !path.IsAbs(dst) {
		return fmt.Errorf("the destination %q must be an absolute path", dst)
	}
	if path.Clean(dst) == "/" {
		return errors.New("the destination cannot be \"/\"")
	}
	return nil
}

// sortMounts orders mounts parents first (by the number of path components), so that a mount
// at /a/b lands inside one at /a, as Docker does.
func sortMounts(mps []mountPoint) {
	slices.SortStableFunc(mps, func(a, b mountPoint) int {
		return strings.Count(a.Destination, "/") - strings.Count(b.Destination, "/")
	})
}

// specMounts turns a container's mount points into OCI mounts at start: it creates missing -v
// bind sources and fills empty volumes from the image (copy-up). rootfs is mounted.
func (d *Daemon) specMounts(ctx context.Context, rec *ctrRecord, rootfs string) ([]specs.Mount, error) {
	var out []specs.Mount
	for _, mp := range rec.Mounts {
		switch mp.Type {
		case mount.TypeBind, mount.TypeVolume:
			src := mp.Source
			if mp.Type == mount.TypeVolume {
				if _, err := d.volumes.Get(mp.Name); err != nil {
					return nil, fmt.Errorf("volume %s of %s: %w", mp.Name, mp.Destination, err)
				}
				src = d.volumes.Path(mp.Name)
				if mp.CopyData {
					if err := copyUp(ctx, rootfs, mp.Destination, src); err != nil {
						return nil, fmt.Errorf("copy image content at %s into volume %s: %w", mp.Destination, mp.Name, err)
					}
				}
			} else if _, err := os.Stat(src); err != nil {
				if !errors.Is(err, fs.ErrNotExist) || !mp.CreateSource {
					return nil, invalid(fmt.Errorf("invalid mount config for type \"bind\": bind source path does not exist: %s", src))
				}
				if err := os.MkdirAll(src, 0o755); err != nil {
					return nil, fmt.Errorf("create bind source %s: %w", src, err)
				}
			}
			opts := []string{"rbind"}
			if mp.NonRecursive {
				opts[0] = "bind"
			}
			prop := string(mp.Propagation)
			if prop == "" {
				prop = string(mount.PropagationRPrivate)
			}
			opts = append(opts, prop)
			if !mp.RW {
				opts = append(opts, "ro")
			}
			out = append(out, specs.Mount{Destination: mp.Destination, Type: "bind", Source: src, Options: opts})
		case mount.TypeTmpfs:
			opts := []string{"noexec", "nosuid", "nodev"}
			if mp.TmpfsSize > 0 {
				opts = append(opts, "size="+strconv.FormatInt(mp.TmpfsSize, 10))
			}
			if mp.TmpfsMode != 0 {
				// Docker passes the raw value in octal (1777 from --mount tmpfs-mode=1777).
				opts = append(opts, "mode="+strconv.FormatUint(uint64(mp.TmpfsMode), 8))
			}
			if !mp.RW {
				opts = append(opts, "ro")
			}
			out = append(out, specs.Mount{Destination: mp.Destination, Type: "tmpfs", Source: "tmpfs", Options: opts})
		}
	}
	return out, nil
}

// copyUp fills an empty volume directory with what the image has at dst (Docker's copy of
// image content into a new volume): files, ownership, modes and the directory's own metadata.
// The path is resolved inside rootfs, so an image's symlinks cannot point it at host files.
func copyUp(ctx context.Context, rootfs, dst, volDir string) error {
	ents, err := os.ReadDir(volDir)
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return nil
	}
	src, err := securejoin.SecureJoin(rootfs, dst)
	if err != nil {
		return err
	}
	st, err := os.Lstat(src)
	if err != nil || !st.IsDir() {
		return nil // nothing to copy: the mount point is made by the runtime
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		_ = os.Lchown(volDir, int(sys.Uid), int(sys.Gid))
		_ = os.Chmod(volDir, st.Mode().Perm()|st.Mode()&(os.ModeSticky|os.ModeSetgid|os.ModeSetuid))
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(archive.WriteDir(ctx, pw, src))
	}()
	_, err = archive.Apply(ctx, volDir, pr, archive.ApplyOptions{})
	_ = pr.CloseWithError(errors.New("copy finished"))
	return err
}

// releaseMounts is called when a container is removed: with removeVolumes, its anonymous
// volumes go too, unless another container (through --volumes-from) still uses them.
func (d *Daemon) releaseMounts(ctx context.Context, rec *ctrRecord, removeVolumes bool) {
	if !removeVolumes {
		return
	}
	for _, mp := range rec.Mounts {
		if mp.Type != mount.TypeVolume || !mp.Anonymous {
			continue
		}
		if err := d.volumes.Remove(ctx, mp.Name, true); err != nil {
			if !errdefs.IsConflict(err) {
				d.log.Warn("remove anonymous volume", "volume", mp.Name, "container", rec.ID, "err", err)
			}
			continue
		}
		d.events.Publish(events.VolumeEventType, events.ActionDestroy, mp.Name, map[string]string{"driver": volume.DriverLocal})
	}
}

// volumeUsers lists the IDs of the containers that use a volume. The volume store calls it
// under its own lock, and ContainerRemove calls the store holding a container's lock, so this
// must not take container locks: it reads only rec.ID and rec.Mounts, which are set when the
// container is made and never written afterwards.
func (d *Daemon) volumeUsers(name string) []string {
	var out []string
	for _, c := range d.ctrs.all() {
		for _, mp := range c.rec.Mounts {
			if mp.Type == mount.TypeVolume && mp.Name == name {
				out = append(out, c.rec.ID)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// resolveMounted is resolveInRoot for docker cp, seeing the container's volumes and binds: a
// path at or under a mount's destination resolves inside the mount's source (confined to it
// the same way), as the container sees it. It returns the mount used, nil for the rootfs.
func resolveMounted(rec *ctrRecord, rootfs, p string, follow bool) (string, *mountPoint, error) {
	clean := path.Clean("/" + p)
	var best *mountPoint
	for i := range rec.Mounts {
		mp := &rec.Mounts[i]
		if mp.Type != mount.TypeVolume && mp.Type != mount.TypeBind {
			continue
		}
		if clean == mp.Destination || strings.HasPrefix(clean, mp.Destination+"/") {
			if best == nil || len(mp.Destination) > len(best.Destination) {
				best = mp
			}
		}
	}
	if best == nil {
		host, err := resolveInRoot(rootfs, p, follow)
		return host, nil, err
	}
	rel := strings.TrimPrefix(clean, best.Destination)
	if rel == "" {
		rel = "/"
	}
	host, err := resolveInRoot(best.Source, rel, follow)
	return host, best, err
}

// usesVolume is ps's volume filter: a volume name or a mount destination.
func usesVolume(r *ctrRecord, v string) bool {
	for _, mp := range r.Mounts {
		if (mp.Type == mount.TypeVolume && mp.Name == v) || mp.Destination == path.Clean(v) {
			return true
		}
	}
	return false
}

// dockerMounts renders mount points as inspect's and ps's Mounts.
func dockerMounts(mps []mountPoint) []mcontainer.MountPoint {
	out := make([]mcontainer.MountPoint, 0, len(mps))
	for _, mp := range mps {
		m := mcontainer.MountPoint{
			Type:        mp.Type,
			Name:        mp.Name,
			Source:      mp.Source,
			Destination: mp.Destination,
			Mode:        mp.Mode,
			RW:          mp.RW,
			Propagation: mp.Propagation,
		}
		switch mp.Type {
		case mount.TypeVolume:
			m.Driver = volume.DriverLocal
			if m.Mode == "" {
				m.Mode = "z"
			}
		case mount.TypeBind:
			if m.Propagation == "" {
				m.Propagation = mount.PropagationRPrivate
			}
		}
		out = append(out, m)
	}
	return out
}

// toAPIVolume renders a volume; usage adds its size and reference count (df, ls -v).
func (d *Daemon) toAPIVolume(v volume.Volume, usage bool) mvolume.Volume {
	out := mvolume.Volume{
		Name:       v.Name,
		Driver:     v.Driver,
		Labels:     v.Labels,
		Options:    v.Options,
		Mountpoint: d.volumes.Path(v.Name),
		Scope:      "local",
		CreatedAt:  v.CreatedAt.Format("2006-01-02T15:04:05Z07:00"),
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if out.Options == nil {
		out.Options = map[string]string{}
	}
	if usage {
		size, err := volume.DirSize(d.volumes.Path(v.Name))
		if err != nil {
			size = -1
		}
		out.UsageData = &mvolume.UsageData{RefCount: int64(len(d.volumes.Users(v.Name))), Size: size}
	}
	return out
}

// VolumeCreate creates a volume (or returns the existing one of that name).
func (d *Daemon) VolumeCreate(ctx context.Context, req mvolume.CreateRequest) (mvolume.Volume, error) {
	v, created, err := d.volumes.Create(ctx, volume.CreateOptions{Name: req.Name, Driver: req.Driver, Labels: req.Labels, Options: req.DriverOpts}, false)
	if err != nil {
		return mvolume.Volume{}, err
	}
	if created {
		d.events.Publish(events.VolumeEventType, events.ActionCreate, v.Name, map[string]string{"driver": v.Driver})
	}
	return d.toAPIVolume(v, false), nil
}

// VolumeInspect returns a volume.
func (d *Daemon) VolumeInspect(ctx context.Context, name string) (mvolume.Volume, error) {
	v, err := d.volumes.Get(name)
	if err != nil {
		return mvolume.Volume{}, err
	}
	return d.toAPIVolume(v, false), nil
}

// VolumeList lists volumes with Docker's filters: name (substring), driver, label,
// dangling (not used by any container).
func (d *Daemon) VolumeList(ctx context.Context, f api.Filters) ([]mvolume.Volume, error) {
	vols, err := d.volumes.List()
	if err != nil {
		return nil, err
	}
	var dangling *bool
	for _, v := range f["dangling"] {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, invalid(fmt.Errorf("invalid filter 'dangling=%s'", v))
		}
		dangling = &b
	}
	out := []mvolume.Volume{}
	for _, v := range vols {
		if len(f["name"]) > 0 && !slices.ContainsFunc(f["name"], func(n string) bool { return strings.Contains(v.Name, n) }) {
			continue
		}
		if len(f["driver"]) > 0 && !slices.Contains(f["driver"], v.Driver) {
			continue
		}
		if !matchLabels(v.Labels, f["label"]) {
			continue
		}
		if dangling != nil && (len(d.volumes.Users(v.Name)) == 0) != *dangling {
			continue
		}
		out = append(out, d.toAPIVolume(v, false))
	}
	return out, nil
}

// VolumeRemove deletes a volume; one in use is a conflict.
func (d *Daemon) VolumeRemove(ctx context.Context, name string, force bool) error {
	if err := d.volumes.Remove(ctx, name, force); err != nil {
		return err
	}
	d.events.Publish(events.VolumeEventType, events.ActionDestroy, name, map[string]string{"driver": volume.DriverLocal})
	return nil
}

// VolumePrune removes unused volumes: anonymous ones, or all with the all=true filter (API
// 1.42+ semantics), restricted by label filters.
func (d *Daemon) VolumePrune(ctx context.Context, f api.Filters) (mvolume.PruneReport, error) {
	all := false
	for _, v := range f["all"] {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return mvolume.PruneReport{}, invalid(fmt.Errorf("invalid filter 'all=%s'", v))
		}
		all = b
	}
	names, freed, err := d.volumes.Prune(ctx, func(v volume.Volume) bool {
		if !all && !v.Anonymous {
			return false
		}
		for _, l := range f["label!"] {
			k, val, hasV := strings.Cut(l, "=")
			if got, ok := v.Labels[k]; ok && (!hasV || got == val) {
				return false
			}
		}
		return matchLabels(v.Labels, f["label"])
	})
	if err != nil {
		return mvolume.PruneReport{}, err
	}
	for _, n := range names {
		d.events.Publish(events.VolumeEventType, events.ActionDestroy, n, map[string]string{"driver": volume.DriverLocal})
	}
	d.events.Publish(events.VolumeEventType, events.ActionPrune, "", map[string]string{"reclaimed": strconv.FormatUint(freed, 10)})
	return mvolume.PruneReport{VolumesDeleted: names, SpaceReclaimed: freed}, nil
}

// DiskUsage is GET /system/df: images with their container counts, containers with their
// writable-layer sizes, volumes with sizes and reference counts.
func (d *Daemon) DiskUsage(ctx context.Context) (api.DiskUsage, error) {
	var du api.DiskUsage
	imgs, err := d.images.ImageList(ctx, true, nil)
	if err != nil {
		return du, err
	}
	ctrs, err := d.ContainerList(ctx, true, 0, true, nil)
	if err != nil {
		return du, err
	}
	perImage := map[string]int64{}
	for i := range ctrs {
		perImage[ctrs[i].ImageID]++
	}
	usage, err := d.images.DiskUsage(ctx)
	if err != nil {
		return du, err
	}
	du.LayersSize = usage.LayersSize
	for i := range imgs {
		imgs[i].Containers = perImage[imgs[i].ID]
		imgs[i].SharedSize = usage.SharedSize[imgs[i].ID]
	}
	du.Images = imgs
	du.Containers = ctrs
	vols, err := d.volumes.List()
	if err != nil {
		return du, err
	}
	du.Volumes = []mvolume.Volume{}
	for _, v := range vols {
		du.Volumes = append(du.Volumes, d.toAPIVolume(v, true))
	}
	return du, nil
}
