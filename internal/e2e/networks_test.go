package e2e

import (
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// netTag derives a short name for a daemon's kernel objects.
func netTag(seed string) string {
	return fmt.Sprintf("%04x", crc32.ChecksumIEEE([]byte(seed))&0xffff)
}

// removeNetObjects deletes what a daemon tagged tag left in the kernel: its bridges (their
// veths go with the containers' namespaces) and its nftables table.
func removeNetObjects(t *testing.T, tag string) {
	links, _ := netlink.LinkList()
	for _, l := range links {
		n := l.Attrs().Name
		if n == "be"+tag || strings.HasPrefix(n, "e"+tag+"-") {
			if err := netlink.LinkDel(l); err != nil {
				t.Errorf("delete %s: %v", n, err)
			}
		}
	}
	c, err := nftables.New()
	if err != nil {
		return
	}
	tb := &nftables.Table{Name: "berth-e" + tag, Family: nftables.TableFamilyIPv4}
	c.AddTable(tb)
	c.DelTable(tb)
	_ = c.Flush()
}

func TestDockerNetworks(t *testing.T) {
	d := startDaemon(t)
	d.importBusybox(t, "busybox")
	if out := d.mustDocker(t, nil, "network", "create", "--label", "team=a", "-o", "com.docker.network.driver.mtu=1400", "appnet"); len(strings.TrimSpace(out)) != 64 {
		t.Fatalf("network create printed %q", out)
	}
	if r := d.docker(t, nil, "run", "--rm", "--network", "nope", "busybox", "true"); r.code == 0 || !strings.Contains(r.stderr, "network nope not found") || strings.Contains(r.stderr, "Unable to find image") {
		t.Fatalf("unknown network: %s", r)
	}
	ls := d.mustDocker(t, nil, "network", "ls")
	for _, want := range []string{"appnet", "bridge", "host", "none"} {
		if !strings.Contains(ls, want) {
			t.Errorf("network ls lacks %s:\n%s", want, ls)
		}
	}
	if r := d.docker(t, nil, "network", "create", "appnet"); r.code == 0 {
		t.Fatal("duplicate network name accepted")
	}
	sub := strings.TrimSpace(d.mustDocker(t, nil, "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}} {{.Labels.team}}", "appnet"))
	if !strings.HasSuffix(sub, " a") || !strings.Contains(sub, "/") {
		t.Fatalf("network inspect: %q", sub)
	}
	d.mustDocker(t, nil, "run", "-d", "--name", "web", "--network", "appnet", "--network-alias", "www", "-p", "127.0.0.1::80", "busybox",
		"sh", "-c", "mkdir /w && echo hi > /w/index.html && exec httpd -f -p 80 -h /w")
	out := d.mustDocker(t, nil, "run", "--rm", "--network", "appnet", "busybox", "sh", "-c", "ping -c1 -W2 www >/dev/null && cat /sys/class/net/eth0/mtu && timeout 5 wget -q -O- http://web/")
	if out != "1400\nhi\n" {
		t.Fatalf("container to container by name: %q", out)
	}
	port := strings.TrimSpace(d.mustDocker(t, nil, "port", "web", "80"))
	if !strings.HasPrefix(port, "127.0.0.1:") {
		t.Fatalf("docker port: %q", port)
	}
	var body string
	for range 50 {
		if resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + port + "/"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if body != "hi\n" {
		t.Fatalf("published port %s answered %q", port, body)
	}
	if ps := d.mustDocker(t, nil, "ps", "--format", "{{.Ports}}"); !strings.Contains(ps, "->80/tcp") {
		t.Fatalf("ps ports: %q", ps)
	}
	if ps := d.mustDocker(t, nil, "ps", "--filter", "network=appnet", "--format", "{{.Names}}"); ps != "web\n" {
		t.Fatalf("ps --filter network=appnet: %q", ps)
	}
	if ps := d.mustDocker(t, nil, "ps", "--filter", "network=none", "-q"); ps != "" {
		t.Fatalf("ps --filter network=none: %q", ps)
	}
	ip := strings.TrimSpace(d.mustDocker(t, nil, "inspect", "-f", "{{(index .NetworkSettings.Networks \"appnet\").IPAddress}}", "web"))
	if !strings.Contains(d.mustDocker(t, nil, "network", "inspect", "appnet"), ip) {
		t.Fatalf("network inspect lacks the container's address %s", ip)
	}
	d.mustDocker(t, nil, "network", "create", "--internal", "--subnet", "10.213.7.0/24", "--gateway", "10.213.7.254", "other")
	d.mustDocker(t, nil, "network", "connect", "--ip", "10.213.7.9", "other", "web")
	if got := d.mustDocker(t, nil, "run", "--rm", "--network", "other", "busybox", "ping", "-c1", "-W2", "10.213.7.9"); !strings.Contains(got, "1 packets received") {
		t.Fatalf("after connect: %q", got)
	}
	d.mustDocker(t, nil, "network", "disconnect", "other", "web")
	if r := d.docker(t, nil, "network", "rm", "appnet"); r.code == 0 {
		t.Fatal("removed a network in use")
	}
	d.mustDocker(t, nil, "rm", "-f", "web")
	d.mustDocker(t, nil, "network", "rm", "appnet")
	if out := d.mustDocker(t, nil, "network", "prune", "-f"); !strings.Contains(out, "other") {
		t.Fatalf("network prune: %q", out)
	}
	if ls := d.mustDocker(t, nil, "network", "ls", "-q"); len(strings.Fields(ls)) != 3 {
		t.Fatalf("networks left: %q", ls)
	}
}

// TestStopLeavesNothing: once its containers are removed, a daemon stopped with SIGTERM leaves
// no bridge, nftables table, network namespace or cgroup behind.
func TestStopLeavesNothing(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	d.importBusybox(t, "busybox:latest")
	d.mustDocker(t, nil, "network", "create", "leftnet")
	d.mustDocker(t, nil, "run", "-d", "--name", "left-a", "-p", "127.0.0.1::80", "busybox", "sleep", "100")
	d.mustDocker(t, nil, "run", "-d", "--name", "left-b", "--network", "leftnet", "busybox", "sleep", "100")
	d.mustDocker(t, nil, "rm", "-f", "left-a", "left-b")
	d.stop(t)
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	for _, l := range strings.Split(string(links), "\n") {
		if strings.Contains(l, "be"+d.netTag) || strings.Contains(l, "e"+d.netTag+"-") {
			t.Errorf("link left behind: %s", l)
		}
	}
	if out, _ := exec.Command("nft", "list", "tables").Output(); strings.Contains(string(out), "berth-e"+d.netTag) {
		t.Errorf("nftables table left behind:\n%s", out)
	}
	if ents, _ := os.ReadDir(filepath.Join(d.execRoot, "netns")); len(ents) != 0 {
		t.Errorf("%d network namespaces left behind", len(ents))
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/pids", d.cgroupParent)); err == nil {
		t.Errorf("cgroup %s left behind", d.cgroupParent)
	}
}
