package e2e

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// startDaemonWith starts a daemon as startDaemon does, with extra `berth daemon` flags.
func startDaemonWith(t *testing.T, extra ...string) *daemon {
	t.Helper()
	d := newDaemon(t)
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"daemon", "--root", d.root, "--exec-root", d.execRoot, "-H", d.host, "--log-level", "debug", "--cgroup-parent", d.cgroupParent,
		"--bridge", "be" + d.netTag, "--bridge-prefix", "e" + d.netTag + "-", "--nftables-table", "berth-e" + d.netTag}
	cmd := exec.Command(berthBin, append(args, extra...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start daemon: %v", err)
	}
	d.cmd, d.done = cmd, make(chan struct{})
	go func() {
		d.waitErr = cmd.Wait()
		logf.Close()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.removeContainers(t)
		d.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(d.logPath)
			t.Logf("daemon log:\n%s", b)
		}
	})
	d.waitReady(t)
	return d
}

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
