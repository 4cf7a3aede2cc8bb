package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDockerVolumes drives volumes, binds, commit and disk usage with the docker CLI.
func TestDockerVolumes(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	d.importBusybox(t, "busybox:latest", "-c", `CMD ["sh"]`)

	if out := d.mustDocker(t, nil, "volume", "create", "--label", "k=v", "vol1"); out != "vol1\n" {
		t.Errorf("volume create = %q", out)
	}
	if out := d.mustDocker(t, nil, "volume", "ls", "-q"); out != "vol1\n" {
		t.Errorf("volume ls -q = %q", out)
	}
	if out := d.mustDocker(t, nil, "volume", "ls", "--filter", "label=k=v", "--format", "{{.Name}} {{.Driver}}"); out != "vol1 local\n" {
		t.Errorf("volume ls --filter = %q", out)
	}
	var vols []map[string]any
	if err := json.Unmarshal([]byte(d.mustDocker(t, nil, "volume", "inspect", "vol1")), &vols); err != nil || len(vols) != 1 {
		t.Fatalf("volume inspect: %v %v", vols, err)
	}
	if vols[0]["Name"] != "vol1" || vols[0]["Driver"] != "local" || !strings.HasSuffix(vols[0]["Mountpoint"].(string), "/volumes/vol1/_data") {
		t.Errorf("volume inspect = %v", vols[0])
	}
	// Persistence across containers.
	d.mustDocker(t, nil, "run", "--rm", "--network", "none", "-v", "vol1:/data", "busybox", "sh", "-c", "echo persisted > /data/f")
	if out := d.mustDocker(t, nil, "run", "--rm", "--network", "none", "-v", "vol1:/data:ro", "busybox", "cat", "/data/f"); out != "persisted\n" {
		t.Errorf("volume content = %q", out)
	}
	// In use: refused with 409's message; the error names the container.
	d.mustDocker(t, nil, "create", "--name", "user", "--network", "none", "--mount", "type=volume,src=vol1,dst=/data", "busybox", "true")
	if r := d.docker(t, nil, "volume", "rm", "vol1"); r.code == 0 || !strings.Contains(r.stderr, "volume is in use") {
		t.Errorf("volume rm in use: %s", r)
	}
	var mounts []map[string]any
	if err := json.Unmarshal([]byte(d.mustDocker(t, nil, "inspect", "-f", "{{json .Mounts}}", "user")), &mounts); err != nil || len(mounts) != 1 || mounts[0]["Name"] != "vol1" {
		t.Errorf("inspect Mounts = %v %v", mounts, err)
	}
	if out := d.mustDocker(t, nil, "ps", "-a", "--format", "{{.Mounts}}"); out != "vol1\n" {
		t.Errorf("ps mounts = %q", out)
	}
	d.mustDocker(t, nil, "rm", "user")
	// A read-only bind mount.
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "f"), []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := d.docker(t, nil, "run", "--rm", "--network", "none", "-v", host+":/h:ro", "busybox", "sh", "-c", "cat /h/f; touch /h/x"); r.code == 0 || r.stdout != "host\n" || !strings.Contains(r.stderr, "Read-only") {
		t.Errorf("ro bind: %s", r)
	}
	// Anonymous volume removed by --rm.
	d.mustDocker(t, nil, "run", "--rm", "--network", "none", "-v", "/anon", "busybox", "true")
	if out := d.mustDocker(t, nil, "volume", "ls", "-q"); out != "vol1\n" {
		t.Errorf("volumes after --rm with an anonymous volume: %q", out)
	}
	// Bad specifications are reported naming the flag.
	if r := d.docker(t, nil, "run", "--rm", "--mount", "type=bind,target=/x", "busybox", "true"); r.code == 0 {
		t.Errorf("bad --mount accepted: %s", r)
	}
	if r := d.berth(t, nil, "run", "--rm", "--mount", "type=bind,target=/x", "busybox", "true"); r.code == 0 || !strings.Contains(r.stderr, "--mount") {
		t.Errorf("berth bad --mount: %s", r)
	}
	if out := d.mustDocker(t, nil, "volume", "rm", "vol1"); out != "vol1\n" {
		t.Errorf("volume rm = %q", out)
	}
	// berth's own volume verbs.
	d.mustBerth(t, nil, "volume", "create", "bvol")
	if out := d.mustBerth(t, nil, "volume", "ls", "-q"); out != "bvol\n" {
		t.Errorf("berth volume ls = %q", out)
	}
	if out := d.mustBerth(t, nil, "volume", "prune", "-a", "-f"); !strings.Contains(out, "bvol") {
		t.Errorf("berth volume prune = %q", out)
	}
}

// TestDockerCommitAndDF covers docker commit and docker system df.
func TestDockerCommitAndDF(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	d.importBusybox(t, "busybox:latest", "-c", `CMD ["sh"]`)

	d.mustDocker(t, nil, "run", "--name", "src", "--network", "none", "busybox", "sh", "-c", "echo committed > /newfile; rm /bin/ls")
	id := strings.TrimSpace(d.mustDocker(t, nil, "commit", "-a", "me", "-m", "msg", "-c", `CMD ["cat", "/newfile"]`, "src", "mine:v1"))
	if !strings.HasPrefix(id, "sha256:") {
		t.Errorf("docker commit = %q", id)
	}
	if out := d.mustDocker(t, nil, "run", "--rm", "--network", "none", "mine:v1"); out != "committed\n" {
		t.Errorf("run committed image = %q", out)
	}
	if r := d.docker(t, nil, "run", "--rm", "--network", "none", "mine:v1", "ls"); r.code == 0 {
		t.Errorf("deleted file came back: %s", r)
	}
	if out := d.mustDocker(t, nil, "image", "inspect", "-f", "{{.Author}} {{.Comment}} {{len .RootFS.Layers}}", "mine:v1"); out != "me msg 2\n" {
		t.Errorf("image inspect = %q", out)
	}
	if out := d.mustBerth(t, nil, "commit", "-c", "ENV X=1", "src", "mine:v2"); !strings.HasPrefix(out, "sha256:") {
		t.Errorf("berth commit = %q", out)
	}
	if out := d.mustDocker(t, nil, "run", "--rm", "--network", "none", "mine:v2", "sh", "-c", "echo $X"); out != "1\n" {
		t.Errorf("--change ENV = %q", out)
	}

	d.mustDocker(t, nil, "volume", "create", "dfvol")
	out := d.mustDocker(t, nil, "system", "df")
	for _, want := range []string{"TYPE", "Images", "Containers", "Local Volumes", "Build Cache"} {
		if !strings.Contains(out, want) {
			t.Errorf("docker system df lacks %q:\n%s", want, out)
		}
	}
	if out := d.mustDocker(t, nil, "system", "df", "-v"); !strings.Contains(out, "dfvol") || !strings.Contains(out, "mine") {
		t.Errorf("docker system df -v:\n%s", out)
	}
	if out := d.mustBerth(t, nil, "system", "df"); !strings.Contains(out, "Local Volumes") {
		t.Errorf("berth system df:\n%s", out)
	}
	d.mustDocker(t, nil, "run", "--network", "none", "-v", "/anon", "busybox", "true")
	if out := d.mustDocker(t, nil, "system", "prune", "-f", "--volumes"); !strings.Contains(out, "Deleted Volumes:") || !strings.Contains(out, "Total reclaimed space") {
		t.Errorf("docker system prune:\n%s", out)
	}
	d.mustDocker(t, nil, "run", "--network", "none", "busybox", "true")
	out = d.mustBerth(t, nil, "system", "prune", "-f", "--volumes")
	if !strings.Contains(out, "Total reclaimed space") {
		t.Errorf("berth system prune:\n%s", out)
	}
	if out := d.mustDocker(t, nil, "ps", "-aq"); out != "" {
		t.Errorf("containers after system prune: %q", out)
	}
}
