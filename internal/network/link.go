package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ensureBridge creates (or finds) a bridge with the gateway address and brings it up.
func ensureBridge(name string, gw netip.Prefix, mtu int) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("look up bridge %s: %w", name, err)
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, TxQLen: -1}}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create bridge %s: %w", name, err)
		}
		if l, err = netlink.LinkByName(name); err != nil {
			return nil, fmt.Errorf("look up bridge %s: %w", name, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: gw.Addr().AsSlice(), Mask: net.CIDRMask(gw.Bits(), 32)}}
	if err := netlink.AddrReplace(l, addr); err != nil {
		return nil, fmt.Errorf("address bridge %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("bring up bridge %s: %w", name, err)
	}
	// The host's connections to 127.0.0.1 on a published port are DNATed to a container and
	// leave through the bridge with a loopback source (masqueraded after routing): the kernel
	// refuses to route those unless route_localnet is on for the bridge. The guard chain of
	// berth's table drops loopback-addressed packets that come in on the bridge.
	if err := setSysctl("net/ipv4/conf/"+name+"/route_localnet", "1"); err != nil {
		return nil, fmt.Errorf("bridge %s: %w", name, err)
	}
	return l, nil
}

// setSysctl writes value to /proc/sys/<key> unless it holds it already (a read is cheaper than
// a write, which notifies the kernel's listeners).
func setSysctl(key, value string) error {
	p := "/proc/sys/" + key
	if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == value {
		return nil
	}
	if err := os.WriteFile(p, []byte(value+"\n"), 0o644); err != nil {
		return fmt.Errorf("set %s: %w", key, err)
	}
	return nil
}

// deleteLink removes a link by name; a missing link is not an error.
func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// ifaceConfig is one interface inside a container's namespace.
type ifaceConfig struct {
	HostVeth string
	IfName   string // eth0, eth1, ...
	Bridge   string
	Addr     netip.Prefix // the container's address with the subnet's length
	Gateway  netip.Addr   // set for the interface that carries the default route
	MAC      string
	MTU      int
}

// attachVeth creates a veth pair whose container end is born inside the namespace at nsPath
// under its final name (no move, no rename: each costs a round of the kernel's link
// notifications), puts the host end on the bridge, and configures the container end: address,
// MAC, MTU and (optionally) the default route.
//
// The host end is created up and on the bridge in the same request; the container end needs
// three more (address, up, route) on a handle inside the namespace. bridgeIndex is the
// bridge's interface index, as ensureBridge returned it.
func attachVeth(nsPath string, bridgeIndex int, cfg ifaceConfig) (retErr error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer ns.Close()
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: cfg.HostVeth, MTU: cfg.MTU, MasterIndex: bridgeIndex, TxQLen: -1, Flags: net.FlagUp},
		PeerName:      cfg.IfName,
		PeerTxQLen:    -1, // the kernel default, as the host end (0 would be the struct default)
		PeerNamespace: netlink.NsFd(ns),
	}
	if mac, err := net.ParseMAC(cfg.MAC); err == nil {
		v.PeerHardwareAddr = mac
	}
	err = netlink.LinkAdd(v)
	if errors.Is(err, unix.EEXIST) {
		// The name derives from the container: a restart right after an exit finds the previous
		// pair, which the kernel deletes only when it gets to the dead namespace's cleanup.
		_ = deleteLink(cfg.HostVeth)
		err = netlink.LinkAdd(v)
	}
	if err != nil {
		return fmt.Errorf("create veth %s: %w", cfg.HostVeth, err)
	}
	defer func() {
		if retErr != nil {
			_ = deleteLink(cfg.HostVeth)
		}
	}()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in container namespace: %w", err)
	}
	defer h.Close()
	cl, err := h.LinkByName(cfg.IfName)
	if err != nil {
		return fmt.Errorf("veth in container: %w", err)
	}
	if err := h.AddrAdd(cl, &netlink.Addr{IPNet: &net.IPNet{IP: cfg.Addr.Addr().AsSlice(), Mask: net.CIDRMask(cfg.Addr.Bits(), 32)}}); err != nil {
		return fmt.Errorf("address %s: %w", cfg.Addr, err)
	}
	if err := h.LinkSetUp(cl); err != nil {
		return fmt.Errorf("bring up %s: %w", cfg.IfName, err)
	}
	if cfg.Gateway.IsValid() {
		r := &netlink.Route{LinkIndex: cl.Attrs().Index, Gw: cfg.Gateway.AsSlice()}
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("default route via %s: %w", cfg.Gateway, err)
		}
	}
	return nil
}

// inNetns runs fn on an OS thread that is switched into the namespace at nsPath. The thread is
// switched back afterwards; if that fails the thread is left locked, so the Go runtime discards
// it rather than reusing a thread in the wrong namespace.
func inNetns(nsPath string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(nsPath)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", nsPath, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", nsPath, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return to host netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// createNetns makes a new network namespace with only the loopback interface, up, and
// bind-mounts it at path (which is created).
func createNetns(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o400)
	if err != nil {
		return fmt.Errorf("create netns file: %w", err)
	}
	_ = f.Close()
	errc := make(chan error, 1)
	go func() {
		// This thread never returns to the pool: it ends in the new namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare netns: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind netns: %w", err)
			return
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		_ = removeNetns(path)
		return err
	}
	return nil
}

// removeNetns unmounts and deletes a netns file; a missing one is not an error.
func removeNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// enableForwarding turns on IPv4 forwarding, without which nothing leaves a bridge.
func enableForwarding() error {
	return setSysctl("net/ipv4/ip_forward", "1")
}

// hostRoutes lists the IPv4 destinations routed on the host, so new subnets avoid them.
func hostRoutes() []netip.Prefix {
	rs, err := netlink.RouteList(nil, unix.AF_INET)
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		if a, ok := netip.AddrFromSlice(r.Dst.IP.To4()); ok {
			// The default route (0.0.0.0/0) overlaps everything and says nothing.
			if ones, _ := r.Dst.Mask.Size(); ones > 0 {
				out = append(out, netip.PrefixFrom(a, ones))
			}
		}
	}
	return out
}
