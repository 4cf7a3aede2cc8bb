package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
)

func TestApplyVolumes(t *testing.T) {
	o := containerOpts{
		volumes:     []string{"/anon", "vol:/data:ro", "./rel:/rel"},
		mounts:      []string{"type=tmpfs,dst=/t,tmpfs-size=1m", "type=bind,src=.,dst=/here"},
		volumesFrom: []string{"other:ro"},
	}
	cfg, hc := &container.Config{}, &container.HostConfig{}
	if err := o.applyVolumes(cfg, hc); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if _, ok := cfg.Volumes["/anon"]; !ok || len(cfg.Volumes) != 1 {
		t.Errorf("Volumes = %v", cfg.Volumes)
	}
	if len(hc.Binds) != 2 || hc.Binds[0] != "vol:/data:ro" || hc.Binds[1] != filepath.Join(wd, "rel")+":/rel" {
		t.Errorf("Binds = %v", hc.Binds)
	}
	if len(hc.Mounts) != 2 || hc.Mounts[0].Type != mount.TypeTmpfs || hc.Mounts[1].Source != wd {
		t.Errorf("Mounts = %+v", hc.Mounts)
	}
	if len(hc.VolumesFrom) != 1 {
		t.Errorf("VolumesFrom = %v", hc.VolumesFrom)
	}
	for _, bad := range []containerOpts{
		{volumes: []string{"vol:/data:bogus"}},
		{mounts: []string{"type=bind,dst=/x"}},
		{volumesFrom: []string{"c:rx"}},
	} {
		err := bad.applyVolumes(&container.Config{}, &container.HostConfig{})
		if err == nil || !(strings.Contains(err.Error(), "-v/--volume") || strings.Contains(err.Error(), "--mount") || strings.Contains(err.Error(), "--volumes-from")) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
