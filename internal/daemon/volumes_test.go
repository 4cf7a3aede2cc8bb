package daemon

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/api"
	"github.com/containerd/errdefs"
	mcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	mvolume "github.com/moby/moby/api/types/volume"
)

// vrun is run without a network: these tests are about storage, and must not depend on the
// host's address pools.
func vrun(t *testing.T, d *Daemon, cfg *mcontainer.Config, hc *mcontainer.HostConfig) (string, int, string) {
	t.Helper()
	if hc == nil {
		hc = &mcontainer.HostConfig{}
	}
	hc.NetworkMode = "none"
	return run(t, d, cfg, hc)
}

func sh(script string) *mcontainer.Config {
	return &mcontainer.Config{Cmd: []string{"sh", "-c", script}}
}

func TestVolumeKeepsDataAcrossContainers(t *testing.T) {
	d := newTestDaemon(t)
	ctx := context.Background()
	id, code, out := vrun(t, d, sh("echo kept > /data/f"), &mcontainer.HostConfig{Binds: []string{"data:/data"}})
	if code != 0 {
		t.Fatalf("write: %d %s", code, out)
	}
	ins, err := d.ContainerInspect(ctx, id, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(ins.Mounts) != 1 || ins.Mounts[0].Type != mount.TypeVolume || ins.Mounts[0].Name != "data" ||
		ins.Mounts[0].Destination != "/data" || !ins.Mounts[0].RW || ins.Mounts[0].Driver != "local" {
		t.Errorf("inspect mounts: %+v", ins.Mounts)
	}
	ps, err := d.ContainerList(ctx, true, 0, false, nil)
	if err != nil || len(ps) != 1 || len(ps[0].Mounts) != 1 || ps[0].Mounts[0].Name != "data" {
		t.Errorf("ps mounts: %+v %v", ps, err)
	}
	if ps, _ := d.ContainerList(ctx, true, 0, false, api.Filters{"volume": {"data"}}); len(ps) != 1 {
		t.Errorf("ps --filter volume=data: %d", len(ps))
	}
	if ps, _ := d.ContainerList(ctx, true, 0, false, api.Filters{"volume": {"other"}}); len(ps) != 0 {
		t.Errorf("ps --filter volume=other: %d", len(ps))
	}
	// docker cp sees the volume's content, also of a stopped container.
	if st, err := d.ContainerStatPath(ctx, id, "/data/f"); err != nil || st.Size != 5 {
		t.Errorf("stat in volume: %+v %v", st, err)
	}
	rc, _, err := d.ContainerArchive(ctx, id, "/data")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Contains(b, []byte("kept\n")) {
		t.Errorf("archive of /data lacks the volume's file")
	}
	// The volume is in use: removal is a conflict naming the container.
	err = d.VolumeRemove(ctx, "data", false)
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "volume is in use") {
		t.Fatalf("remove in-use volume: %v", err)
	}
	if err := d.ContainerRemove(ctx, id, false, true); err != nil {
		t.Fatal(err)
	}
	// rm -v keeps named volumes.
	_, code, out = vrun(t, d, sh("cat /data/f"), &mcontainer.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: "data", Target: "/data", ReadOnly: true}}})
	if code != 0 || out != "kept\n" {
		t.Fatalf("read back: %d %q", code, out)
	}
	vols, err := d.VolumeList(ctx, nil)
	if err != nil || len(vols) != 1 || vols[0].Name != "data" {
		t.Fatalf("list: %+v %v", vols, err)
	}
	du, err := d.DiskUsage(ctx)
	if err != nil || len(du.Volumes) != 1 || du.Volumes[0].UsageData == nil || du.Volumes[0].UsageData.Size != 5 || du.Volumes[0].UsageData.RefCount != 1 {
		t.Errorf("df: %+v %v", du.Volumes, err)
	}
	for _, c := range d.ctrs.all() {
		if err := d.ContainerRemove(ctx, c.rec.ID, true, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.VolumeRemove(ctx, "data", false); err != nil {
		t.Fatalf("remove unused volume: %v", err)
	}
}

func TestVolumeAnonymousAndCopyUp(t *testing.T) {
	d := newTestDaemon(t)
	ctx := context.Background()
	// An image whose /seed has content and is a VOLUME.
	id, code, out := vrun(t, d, sh("mkdir /seed && echo from-image > /seed/hello && chown 65534 /seed"), nil)
	if code != 0 {
		t.Fatalf("seed: %d %s", code, out)
	}
	if _, err := d.ContainerCommit(ctx, api.CommitOptions{Container: id, Reference: "seeded:latest", Changes: []string{"VOLUME /seed"}}); err != nil {
		t.Fatal(err)
	}
	// The image's VOLUME becomes an anonymous volume filled from the image.
	id, code, out = vrun(t, d, &mcontainer.Config{Image: "seeded", Cmd: []string{"sh", "-c", "cat /seed/hello; stat -c %u /seed; echo more > /seed/more"}}, nil)
	if code != 0 || out != "from-image\n65534\n" {
		t.Fatalf("anonymous copy-up: %d %q", code, out)
	}
	ins, _ := d.ContainerInspect(ctx, id, false)
	if len(ins.Mounts) != 1 || ins.Mounts[0].Name == "" || ins.Mounts[0].Destination != "/seed" {
		t.Fatalf("mounts: %+v", ins.Mounts)
	}
	anon := ins.Mounts[0].Name
	if b, err := os.ReadFile(filepath.Join(d.volumes.Path(anon), "more")); err != nil || string(b) != "more\n" {
		t.Errorf("write went to %s: %q %v", anon, b, err)
	}
	// A named volume is filled too; nocopy leaves it empty.
	_, code, out = vrun(t, d, &mcontainer.Config{Image: "seeded", Cmd: []string{"cat", "/seed/hello"}}, &mcontainer.HostConfig{Binds: []string{"named:/seed"}})
	if code != 0 || out != "from-image\n" {
		t.Errorf("named copy-up: %d %q", code, out)
	}
	_, code, out = vrun(t, d, &mcontainer.Config{Image: "seeded", Cmd: []string{"ls", "/seed"}}, &mcontainer.HostConfig{Binds: []string{"empty:/seed:nocopy"}})
	if code != 0 || out != "" {
		t.Errorf("nocopy: %d %q", code, out)
	}
	// --volumes-from shares the anonymous volume.
	_, code, out = vrun(t, d, sh("cat /seed/more"), &mcontainer.HostConfig{VolumesFrom: []string{id + ":ro"}})
	if code != 0 || out != "more\n" {
		t.Errorf("volumes-from: %d %q", code, out)
	}
	// rm -v removes the anonymous volume once no container uses it.
	for _, c := range d.ctrs.all() {
		if err := d.ContainerRemove(ctx, c.rec.ID, true, true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.VolumeInspect(ctx, anon); !errdefs.IsNotFound(err) {
		t.Errorf("anonymous volume survived rm -v: %v", err)
	}
	rep, err := d.VolumePrune(ctx, api.Filters{"all": {"true"}})
	if err != nil || len(rep.VolumesDeleted) != 2 {
		t.Errorf("prune: %+v %v", rep, err)
	}
}

func TestBindMounts(t *testing.T) {
	d := newTestDaemon(t)
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "f"), []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, code, out := vrun(t, d, sh("cat /h/f; touch /h/x"), &mcontainer.HostConfig{Binds: []string{host + ":/h:ro"}})
	if code == 0 || !strings.Contains(out, "host\n") || !strings.Contains(out, "Read-only file system") {
		t.Errorf("ro bind: %d %q", code, out)
	}
	if _, err := os.Stat(filepath.Join(host, "x")); !os.IsNotExist(err) {
		t.Errorf("ro bind was written: %v", err)
	}
	_, code, out = vrun(t, d, sh("echo c > /h/x"), &mcontainer.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeBind, Source: host, Target: "/h"}}})
	if b, _ := os.ReadFile(filepath.Join(host, "x")); code != 0 || string(b) != "c\n" {
		t.Errorf("rw bind: %d %q %q", code, out, b)
	}
	roID, _, _ := vrun(t, d, sh("true"), &mcontainer.HostConfig{Binds: []string{host + ":/h:ro"}})
	if err := d.ContainerExtract(context.Background(), roID, "/h", api.ArchiveOptions{}, bytes.NewReader(nil)); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("cp into a read-only bind: %v", err)
	}
	// -v creates a missing host directory; --mount refuses it.
	missing := filepath.Join(host, "new", "dir")
	if _, code, out = vrun(t, d, sh("true"), &mcontainer.HostConfig{Binds: []string{missing + ":/m"}}); code != 0 {
		t.Errorf("-v missing source: %d %q", code, out)
	}
	if _, err := os.Stat(missing); err != nil {
		t.Errorf("-v did not create %s: %v", missing, err)
	}
	ctx := context.Background()
	cr, err := d.ContainerCreate(ctx, "", &mcontainer.Config{Image: "busybox", Cmd: []string{"true"}}, &mcontainer.HostConfig{NetworkMode: "none", Mounts: []mount.Mount{{Type: mount.TypeBind, Source: host + "/nope", Target: "/m"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerStart(ctx, cr.ID); err == nil || !strings.Contains(err.Error(), "bind source path does not exist") {
		t.Errorf("--mount missing source: %v", err)
	}
	// tmpfs with a size.
	_, code, out = vrun(t, d, sh("grep ' /t ' /proc/mounts"), &mcontainer.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeTmpfs, Target: "/t", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 1 << 20}}}})
	if code != 0 || !strings.Contains(out, "tmpfs") || !strings.Contains(out, "size=1024k") {
		t.Errorf("tmpfs: %d %q", code, out)
	}
	// Bad specifications are refused at create with the flag named.
	_, err = d.ContainerCreate(ctx, "", &mcontainer.Config{Image: "busybox", Cmd: []string{"true"}}, &mcontainer.HostConfig{Binds: []string{"vol:relative"}}, nil)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "-v/--volume") {
		t.Errorf("bad bind: %v", err)
	}
	_, err = d.ContainerCreate(ctx, "", &mcontainer.Config{Image: "busybox", Cmd: []string{"true"}}, &mcontainer.HostConfig{Binds: []string{"aa:/x", "bb:/x"}}, nil)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "duplicate mount point") {
		t.Errorf("duplicate: %v", err)
	}
	// A failed create leaves no volume behind.
	if vols, _ := d.VolumeList(ctx, nil); len(vols) != 0 {
		t.Errorf("volumes after failed creates: %+v", vols)
	}
}

func TestVolumeAPI(t *testing.T) {
	d := newTestDaemon(t)
	ctx := context.Background()
	v, err := d.VolumeCreate(ctx, mvolume.CreateRequest{Name: "v1", Labels: map[string]string{"k": "v"}})
	if err != nil || v.Mountpoint != d.volumes.Path("v1") || v.Labels["k"] != "v" || v.Scope != "local" {
		t.Fatalf("create: %+v %v", v, err)
	}
	if l, _ := d.VolumeList(ctx, api.Filters{"label": {"k=v"}}); len(l) != 1 {
		t.Errorf("label filter: %+v", l)
	}
	if l, _ := d.VolumeList(ctx, api.Filters{"name": {"nomatch"}}); len(l) != 0 {
		t.Errorf("name filter: %+v", l)
	}
	if l, _ := d.VolumeList(ctx, api.Filters{"dangling": {"true"}}); len(l) != 1 {
		t.Errorf("dangling filter: %+v", l)
	}
	// Prune without all keeps named volumes.
	if rep, err := d.VolumePrune(ctx, nil); err != nil || len(rep.VolumesDeleted) != 0 {
		t.Errorf("prune: %+v %v", rep, err)
	}
	if err := d.VolumeRemove(ctx, "v1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := d.VolumeInspect(ctx, "v1"); !errdefs.IsNotFound(err) {
		t.Errorf("inspect removed: %v", err)
	}
}

func TestCommit(t *testing.T) {
	d := newTestDaemon(t)
	ctx := context.Background()
	id, code, out := vrun(t, d, sh("echo new > /newfile && rm /bin/ls && rm -r /home"), nil)
	if code != 0 {
		t.Fatalf("changes: %d %s", code, out)
	}
	imgID, err := d.ContainerCommit(ctx, api.CommitOptions{
		Container: id, Reference: "committed:v1", Author: "me", Comment: "msg",
		Changes: []string{`CMD ["sh", "-c", "cat /newfile; test -e /bin/ls || echo ls-gone; test -e /home || echo home-gone"]`, "ENV FOO=bar"},
		Pause:   true,
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := d.images.ImageInspect(ctx, "committed:v1")
	if err != nil || img.ID != imgID || len(img.RootFS.Layers) != 2 || img.Author != "me" || img.Comment != "msg" {
		t.Fatalf("image: %+v %v", img, err)
	}
	hist, err := d.images.ImageHistory(ctx, "committed:v1")
	if err != nil || len(hist) != 2 || hist[0].Comment != "msg" {
		t.Errorf("history: %+v %v", hist, err)
	}
	_, code, out = vrun(t, d, &mcontainer.Config{Image: "committed:v1"}, nil)
	if code != 0 || out != "new\nls-gone\nhome-gone\n" {
		t.Errorf("run committed image: %d %q", code, out)
	}
	_, code, out = vrun(t, d, &mcontainer.Config{Image: "committed:v1", Cmd: []string{"sh", "-c", "echo $FOO"}}, nil)
	if code != 0 || out != "bar\n" {
		t.Errorf("ENV change: %d %q", code, out)
	}
	// Commit of a running container (paused meanwhile) keeps it running.
	cr, err := d.ContainerCreate(ctx, "", &mcontainer.Config{Image: "busybox", Cmd: []string{"sh", "-c", "echo live > /live; sleep 1000"}}, &mcontainer.HostConfig{NetworkMode: "none"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerStart(ctx, cr.ID); err != nil {
		t.Fatal(err)
	}
	// The file appears once the shell ran; commit until it is in the image.
	var got string
	for i := 0; i < 50 && got != "live\n"; i++ {
		if _, err := d.ContainerCommit(ctx, api.CommitOptions{Container: cr.ID, Reference: "live:latest", Pause: true}); err != nil {
			t.Fatal(err)
		}
		_, _, got = vrun(t, d, &mcontainer.Config{Image: "live", Cmd: []string{"sh", "-c", "cat /live 2>/dev/null"}}, nil)
	}
	if got != "live\n" {
		t.Errorf("commit of running container: %q", got)
	}
	ins, _ := d.ContainerInspect(ctx, cr.ID, false)
	if !ins.State.Running || ins.State.Paused {
		t.Errorf("state after commit: %+v", ins.State)
	}
	if _, err := d.ContainerCommit(ctx, api.CommitOptions{Container: "nope"}); !errdefs.IsNotFound(err) {
		t.Errorf("missing container: %v", err)
	}
	if _, err := d.ContainerCommit(ctx, api.CommitOptions{Container: cr.ID, Changes: []string{"BOGUS x"}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad change: %v", err)
	}
}
