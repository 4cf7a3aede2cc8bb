package daemon

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/api"
	mcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// startCtr creates and starts a detached container.
func startCtr(t *testing.T, d *Daemon, name string, hc *mcontainer.HostConfig, cfg *mcontainer.Config, nc *network.NetworkingConfig) string {
	t.Helper()
	ctx := context.Background()
	if cfg.Image == "" {
		cfg.Image = "busybox"
	}
	cr, err := d.ContainerCreate(ctx, name, cfg, hc, nc)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	if err := d.ContainerStart(ctx, cr.ID); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	return cr.ID
}

// netSh runs a shell command in a throwaway container on netMode and returns its exit code.
func netSh(t *testing.T, d *Daemon, netMode, script string) (int, string) {
	t.Helper()
	_, code, out := run(t, d, &mcontainer.Config{Cmd: []string{"sh", "-c", script}}, &mcontainer.HostConfig{NetworkMode: mcontainer.NetworkMode(netMode)})
	return code, out
}

func mkNet(t *testing.T, d *Daemon, name string, internal bool) {
	t.Helper()
	if _, err := d.NetworkCreate(context.Background(), network.CreateRequest{Name: name, Internal: internal}); err != nil {
		t.Fatalf("network create %s: %v", name, err)
	}
}

func ipOf(t *testing.T, d *Daemon, ref, netName string) string {
	t.Helper()
	ins, err := d.ContainerInspect(context.Background(), ref, false)
	if err != nil {
		t.Fatal(err)
	}
	es := ins.NetworkSettings.Networks[netName]
	if es == nil || !es.IPAddress.IsValid() {
		t.Fatalf("%s has no address on %s: %+v", ref, netName, ins.NetworkSettings.Networks)
	}
	return es.IPAddress.String()
}

const httpdScript = `mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www`

// get fetches url, retrying while the server comes up (bounded).
func get(url string) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	var err error
	for range 50 {
		var resp *http.Response
		if resp, err = c.Get(url); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", err
}

func TestNetworkNamesAndIsolation(t *testing.T) {
	d := newTestDaemon(t)
	mkNet(t, d, "front", false)
	mkNet(t, d, "back", false)
	startCtr(t, d, "web", &mcontainer.HostConfig{NetworkMode: "front"}, &mcontainer.Config{Cmd: []string{"sleep", "1000"}},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{"front": {Aliases: []string{"www"}}}})
	webIP := ipOf(t, d, "web", "front")

	if code, out := netSh(t, d, "front", "ping -c1 -W2 web && ping -c1 -W2 www && cat /etc/resolv.conf"); code != 0 || !strings.Contains(out, "nameserver 127.0.0.11") {
		t.Fatalf("same network by name: exit %d\n%s", code, out)
	}
	if code, out := netSh(t, d, "back", "ping -c1 -W1 "+webIP); code == 0 {
		t.Fatalf("another network reached %s:\n%s", webIP, out)
	}
	if code, out := netSh(t, d, "back", "nslookup web 127.0.0.11"); code == 0 && strings.Contains(out, webIP) {
		t.Fatalf("another network resolved web:\n%s", out)
	}
	// The default bridge has no names, but its containers have addresses and /etc/hosts.
	if code, out := netSh(t, d, "bridge", "ip -4 addr show eth0 && ip route && grep \"$(hostname)\" /etc/hosts"); code != 0 || !strings.Contains(out, "default via") {
		t.Fatalf("default bridge: exit %d\n%s", code, out)
	}
	if code, out := netSh(t, d, "none", "ip -o link | grep -v ' lo:' ; ping -c1 -W1 127.0.0.1"); code != 0 || strings.Contains(out, "eth0") {
		t.Fatalf("--network none: exit %d\n%s", code, out)
	}

	// Live connect and disconnect.
	if code, _ := netSh(t, d, "back", "ping -c1 -W1 web"); code == 0 {
		t.Fatal("web reachable from back before connect")
	}
	if err := d.NetworkConnect(context.Background(), "back", "web", nil); err != nil {
		t.Fatal(err)
	}
	if code, out := netSh(t, d, "back", "ping -c1 -W2 web"); code != 0 {
		t.Fatalf("after connect: exit %d\n%s", code, out)
	}
	if err := d.NetworkDisconnect(context.Background(), "back", "web", false); err != nil {
		t.Fatal(err)
	}
	if code, _ := netSh(t, d, "back", "ping -c1 -W1 web"); code == 0 {
		t.Fatal("web reachable from back after disconnect")
	}
	if err := d.NetworkRemove(context.Background(), "front"); err == nil {
		t.Fatal("removed a network in use")
	}
	// The API socket is not inside containers.
	if code, _ := netSh(t, d, "front", "test -e "+d.cfg.ExecRoot+"/berth.sock || ls "+d.cfg.ExecRoot); code == 0 {
		t.Fatal("container sees the daemon's exec root")
	}
}

// testLink makes an interface of the host with addr for the duration of the test: a veth
// pair with both ends in the host (this kernel has no dummy driver).
func testLink(t *testing.T, name, addr string) {
	t.Helper()
	l := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}
	_ = netlink.LinkDel(l)
	if err := netlink.LinkAdd(l); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(l) })
	a, _ := netlink.ParseAddr(addr)
	if err := netlink.AddrAdd(l, a); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
}

func tag(t *testing.T) string {
	return fmt.Sprintf("%04x", crc32.ChecksumIEEE([]byte(t.Name()+t.TempDir()))&0xffff)
}

func TestNetworkPublish(t *testing.T) {
	d, die := newTestDaemonCancel(t)
	tg := tag(t)
	hostAddr := fmt.Sprintf("198.18.%d.%d", crc32.ChecksumIEEE([]byte(tg))%250+1, 1)
	testLink(t, "bd"+tg, hostAddr+"/32")
	hc := &mcontainer.HostConfig{PortBindings: network.PortMap{
		network.MustParsePort("80/tcp"):   {{HostPort: ""}},
		network.MustParsePort("5000/udp"): {{HostIP: netip.MustParseAddr("127.0.0.1")}},
	}}
	ctx := context.Background()
	cr, err := d.ContainerCreate(ctx, "pub", &mcontainer.Config{Image: "busybox", Cmd: []string{"sh", "-c", "/udpecho & " + httpdScript}}, hc, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := cr.ID
	if err := d.ContainerExtract(ctx, id, "/", api.ArchiveOptions{}, bytes.NewReader(udpEchoTar(t))); err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerStart(ctx, id); err != nil {
		t.Fatal(err)
	}
	ins, err := d.ContainerInspect(ctx, id, false)
	if err != nil {
		t.Fatal(err)
	}
	tcp := ins.NetworkSettings.Ports[network.MustParsePort("80/tcp")]
	udp := ins.NetworkSettings.Ports[network.MustParsePort("5000/udp")]
	if len(tcp) != 1 || tcp[0].HostPort == "" || tcp[0].HostPort == "0" || len(udp) != 1 {
		t.Fatalf("ports: %+v", ins.NetworkSettings.Ports)
	}
	for _, host := range []string{"127.0.0.1", hostAddr} {
		body, err := get("http://" + net.JoinHostPort(host, tcp[0].HostPort) + "/")
		if err != nil || body != "hello\n" {
			t.Fatalf("GET via %s: %q %v", host, body, err)
		}
	}
	c, err := net.Dial("udp4", "127.0.0.1:"+udp[0].HostPort)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := ""
	buf := make([]byte, 64)
	for range 50 {
		_, _ = c.Write([]byte("ping-udp\n"))
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := c.Read(buf); err == nil {
			got = string(buf[:n])
			break
		}
	}
	if got != "ping-udp\n" {
		t.Fatalf("UDP echo through the published port: %q", got)
	}
	// Another container reaches the published port through the host's address (hairpin).
	if code, out := netSh(t, d, "bridge", "timeout 5 wget -q -O- http://"+hostAddr+":"+tcp[0].HostPort+"/"); code != 0 || out != "hello\n" {
		t.Fatalf("hairpin: exit %d %q", code, out)
	}
	// The same host port cannot be published twice.
	hp := tcp[0].HostPort
	_, err = d.ContainerCreate(context.Background(), "dup", &mcontainer.Config{Image: "busybox", Cmd: []string{"sleep", "5"}},
		&mcontainer.HostConfig{PortBindings: network.PortMap{network.MustParsePort("80/tcp"): {{HostPort: hp}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ContainerStart(context.Background(), "dup"); err == nil {
		t.Fatal("published an allocated port twice")
	}

	// -P: a free port for each exposed port.
	id2 := startCtr(t, d, "pall", &mcontainer.HostConfig{PublishAllPorts: true},
		&mcontainer.Config{Cmd: []string{"sh", "-c", httpdScript}, ExposedPorts: network.PortSet{network.MustParsePort("80/tcp"): {}}}, nil)
	ins, _ = d.ContainerInspect(context.Background(), id2, false)
	b := ins.NetworkSettings.Ports[network.MustParsePort("80/tcp")]
	if len(b) != 1 || b[0].HostPort == hp {
		t.Fatalf("-P ports: %+v", ins.NetworkSettings.Ports)
	}
	if body, err := get("http://127.0.0.1:" + b[0].HostPort + "/"); err != nil || body != "hello\n" {
		t.Fatalf("GET -P port: %q %v", body, err)
	}

	// Publishing survives a daemon restart, and so do names.
	mkNet(t, d, "rs", false)
	startCtr(t, d, "peer", &mcontainer.HostConfig{NetworkMode: "rs"}, &mcontainer.Config{Cmd: []string{"sleep", "1000"}}, nil)
	cfg := d.cfg
	d.net.Close()
	stopMonitors(d, die)
	d2 := reopenDaemon(t, cfg)
	d.ctrs = newCtrIndex()
	if body, err := get("http://127.0.0.1:" + tcp[0].HostPort + "/"); err != nil || body != "hello\n" {
		t.Fatalf("after restart: %q %v", body, err)
	}
	if code, out := netSh(t, d2, "rs", "ping -c1 -W2 peer"); code != 0 {
		t.Fatalf("names after restart: exit %d\n%s", code, out)
	}
}

// udpEchoTar builds testdata/udpecho statically and returns a tar holding it as /udpecho.
func udpEchoTar(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "udpecho")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/udpecho")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build udpecho: %v\n%s", err, b)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "udpecho", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg})
	_, _ = tw.Write(bin)
	_ = tw.Close()
	return buf.Bytes()
}

// serverNetns makes a namespace connected to the host by a veth pair, with a TCP server on
// addr:port inside that answers "outside". It stands for the world outside the host.
func serverNetns(t *testing.T, name, hostCIDR, nsCIDR string) string {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	ha, _ := netlink.ParseAddr(hostCIDR)
	_ = netlink.AddrAdd(veth, ha)
	_ = netlink.LinkSetUp(veth)
	peer, err := netlink.LinkByName(name + "p")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(peer, int(ns)); err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	peer, _ = h.LinkByName(name + "p")
	na, _ := netlink.ParseAddr(nsCIDR)
	_ = h.AddrAdd(peer, na)
	_ = h.LinkSetUp(peer)
	if lo, err := h.LinkByName("lo"); err == nil {
		_ = h.LinkSetUp(lo)
	}
	// Replies go back to the host, which masquerades the containers.
	_ = h.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: ha.IP})
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", na.IP.String()+":8080")
	_ = netns.Set(orig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("HTTP/1.0 200 OK\r\nContent-Length: 8\r\n\r\noutside\n"))
			c.Close()
		}
	}()
	return na.IP.String()
}

func TestNetworkInternalHasNoEgress(t *testing.T) {
	d := newTestDaemon(t)
	tg := tag(t)
	oct := crc32.ChecksumIEEE([]byte(tg))%250 + 1
	srv := serverNetns(t, "bo"+tg, fmt.Sprintf("198.19.%d.1/30", oct), fmt.Sprintf("198.19.%d.2/30", oct))
	mkNet(t, d, "open", false)
	mkNet(t, d, "closed", true)
	if code, out := netSh(t, d, "open", "timeout 5 wget -q -O- http://"+srv+":8080/"); code != 0 || out != "outside\n" {
		t.Fatalf("egress from a normal network: exit %d %q", code, out)
	}
	if code, out := netSh(t, d, "closed", "timeout 3 wget -q -O- http://"+srv+":8080/"); code == 0 {
		t.Fatalf("egress from an internal network: %q", out)
	}
	// Names still resolve inside an internal network.
	startCtr(t, d, "inside", &mcontainer.HostConfig{NetworkMode: "closed"}, &mcontainer.Config{Cmd: []string{"sleep", "1000"}}, nil)
	if code, out := netSh(t, d, "closed", "ping -c1 -W2 inside"); code != 0 {
		t.Fatalf("internal network by name: exit %d\n%s", code, out)
	}
}
