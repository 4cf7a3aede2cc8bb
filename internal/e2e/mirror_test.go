package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDockerPullThroughMirror: with --registry-mirror, `docker pull busybox` is served by the
// mirror (Docker Hub is replaced by an unreachable address: there is no internet), a broken
// mirror first in the list is skipped, and `docker info` lists the mirrors and the insecure
// registries as dockerd does.
func TestDockerPullThroughMirror(t *testing.T) {
	mirror := startBerthRegistry(t, "", "")
	d := startDaemonWith(t,
		"--registry-mirror", "http://127.0.0.1:1", "--registry-mirror", "http://"+mirror,
		"--registry-hub", "http://127.0.0.1:1", "--insecure-registry", "reg.example:5000", "--insecure-registry", "10.9.0.0/16")
	id := d.importBusybox(t, "bbx:v1")
	// Fill the mirror through the daemon, as an ordinary registry.
	d.mustDocker(t, nil, "tag", "bbx:v1", mirror+"/library/busybox:latest")
	d.mustDocker(t, nil, "push", mirror+"/library/busybox:latest")
	d.mustDocker(t, nil, "rmi", "bbx:v1", mirror+"/library/busybox:latest")

	out := d.mustDocker(t, nil, "pull", "busybox")
	for _, s := range []string{"Using default tag: latest", "latest: Pulling from library/busybox", "Digest: sha256:", "Status: Downloaded newer image for busybox:latest", "docker.io/library/busybox:latest"} {
		if !strings.Contains(out, s) {
			t.Fatalf("docker pull output lacks %q:\n%s", s, out)
		}
	}
	if got := d.inspect(t, "busybox").ID; got != id {
		t.Fatalf("pulled %s through the mirror, pushed %s", got, id)
	}
	out = d.mustDocker(t, nil, "info")
	for _, s := range []string{"Insecure Registries:\n", "  reg.example:5000\n", "  127.0.0.0/8\n", "  10.9.0.0/16\n",
		"Registry Mirrors:\n  http://127.0.0.1:1/\n  http://" + mirror + "/\n"} {
		if !strings.Contains(out, s) {
			t.Fatalf("docker info lacks %q:\n%s", s, out)
		}
	}
}

// TestDaemonRejectsBadMirror: an invalid --registry-mirror stops the daemon at start-up with
// dockerd's message.
func TestDaemonRejectsBadMirror(t *testing.T) {
	d := newDaemon(t)
	cmd := exec.Command(berthBin, "daemon", "--root", d.root, "--exec-root", d.execRoot, "-H", d.host, "--cgroup-parent", d.cgroupParent,
		"--bridge", "be"+d.netTag, "--bridge-prefix", "e"+d.netTag+"-", "--nftables-table", "berth-e"+d.netTag,
		"--registry-mirror", "mirror.example")
	r := runCmd(t, cmd, nil)
	if r.code == 0 || !strings.Contains(r.stderr, "invalid mirror: no scheme specified") {
		t.Fatalf("daemon with a bad mirror: %s", r)
	}
}
