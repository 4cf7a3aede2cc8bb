package cli

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/berth-dev/berth/internal/volume"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/spf13/pflag"
)

func (o *containerOpts) addVolumeFlags(f *pflag.FlagSet) {
	listVarP(f, &o.volumes, "volume", "v", nil, "Bind mount a volume ([SOURCE:]DESTINATION[:ro|rw,...])")
	listVarP(f, &o.mounts, "mount", "", nil, "Attach a filesystem mount to the container (type=bind|volume|tmpfs,source=...,target=...)")
	listVarP(f, &o.volumesFrom, "volumes-from", "", nil, "Mount volumes from the specified container(s)")
}

// absSource makes a relative bind source ("./data", "../x", ".") absolute, as docker's CLI does.
func absSource(src string) (string, error) {
	if src == "." || src == ".." || strings.HasPrefix(src, "./") || strings.HasPrefix(src, "../") {
		return filepath.Abs(src)
	}
	return src, nil
}

// applyVolumes turns -v, --mount and --volumes-from into the create request, as docker's CLI:
// a lone -v DESTINATION is an anonymous volume in Config.Volumes, other -v values go to
// HostConfig.Binds, --mount to HostConfig.Mounts. Values are checked here so that mistakes are
// reported naming the flag before anything reaches the daemon.
func (o *containerOpts) applyVolumes(cfg *container.Config, hc *container.HostConfig) error {
	for _, v := range o.volumes {
		if src, rest, ok := strings.Cut(v, ":"); ok {
			abs, err := absSource(src)
			if err != nil {
				return fmt.Errorf("invalid -v/--volume %q: %w", v, err)
			}
			v = abs + ":" + rest
		}
		s, err := volume.ParseVolumeFlag(v)
		if err != nil {
			return err
		}
		if !strings.Contains(v, ":") {
			if cfg.Volumes == nil {
				cfg.Volumes = map[string]struct{}{}
			}
			cfg.Volumes[s.Target] = struct{}{}
			continue
		}
		hc.Binds = append(hc.Binds, v)
	}
	for _, m := range o.mounts {
		mm, err := volume.ParseMountFlag(m)
		if err != nil {
			return err
		}
		if mm.Type == mount.TypeBind {
			if mm.Source, err = absSource(mm.Source); err != nil {
				return fmt.Errorf("invalid --mount %q: %w", m, err)
			}
		}
		if err := volume.ValidateMount(mm); err != nil {
			return err
		}
		hc.Mounts = append(hc.Mounts, mm)
	}
	for _, vf := range o.volumesFrom {
		if _, _, err := volume.ParseVolumesFrom(vf); err != nil {
			return err
		}
		hc.VolumesFrom = append(hc.VolumesFrom, vf)
	}
	return nil
}
