package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	bolt "go.etcd.io/bbolt"
)

// Buckets of meta.db this package owns.
var (
	networksBucket  = []byte("networks")
	sandboxesBucket = []byte("network-sandboxes")
)

// Drivers and the predefined networks, named as in Docker.
const (
	DriverBridge = "bridge"
	DriverHost   = "host"
	DriverNull   = "null"

	DefaultNetwork = "bridge"
	// MTUOption is the network option (-o) that sets a bridge's MTU.
	MTUOption = "com.docker.network.driver.mtu"
)

// Options configure a Manager.
type Options struct {
	DB       *bolt.DB
	ExecRoot string // netns files live in <ExecRoot>/netns
	Logger   *slog.Logger
	// DefaultBridge names the default network's bridge ("berth0").
	DefaultBridge string
	// BridgePrefix names user networks' bridges: prefix + the network ID's start ("br-").
	BridgePrefix string
	// Table is berth's nftables table (family ip), "berth" by default.
	Table string
	// ResolvConf is the host's resolver configuration, for DNS forwarding.
	ResolvConf string
}

// Network is one network's persisted configuration.
type Network struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Driver   string            `json:"driver"`
	Created  time.Time         `json:"created"`
	Bridge   string            `json:"bridge,omitempty"`
	Subnet   string            `json:"subnet,omitempty"`
	Gateway  string            `json:"gateway,omitempty"`
	IPRange  string            `json:"ipRange,omitempty"`
	Internal bool              `json:"internal,omitempty"`
	MTU      int               `json:"mtu,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Options  map[string]string `json:"options,omitempty"`
}

// Predefined reports whether the network is one of bridge, host and none.
func (n Network) Predefined() bool {
	return n.Name == DefaultNetwork || n.Name == "host" || n.Name == "none"
}

// UserDefined networks get the embedded DNS server.
func (n Network) UserDefined() bool { return n.Driver == DriverBridge && n.Name != DefaultNetwork }

func (n Network) pool() (Pool, error) { return NewPool(n.Subnet, n.Gateway, n.IPRange) }

// EndpointConfig is what a container asks of one of its networks.
type EndpointConfig struct {
	NetworkID string   `json:"networkId"`
	Aliases   []string `json:"aliases,omitempty"`
	IPv4      string   `json:"ipv4,omitempty"` // --ip
}

// Endpoint is a container's attachment to a network. The operational fields are set while
// the container runs.
type Endpoint struct {
	EndpointConfig
	ID       string `json:"id"`
	IP       string `json:"ip,omitempty"`
	MAC      string `json:"mac,omitempty"`
	IfName   string `json:"ifName,omitempty"`
	HostVeth string `json:"hostVeth,omitempty"`
}

// Port is a published port. HostPort 0 asks for a free one; Bound holds the result.
type Port struct {
	Proto    string `json:"proto"`
	HostIP   string `json:"hostIp,omitempty"`
	HostPort uint16 `json:"hostPort"`
	// HostPortEnd, when set, makes HostPort..HostPortEnd a range to pick a free port from.
	HostPortEnd uint16 `json:"hostPortEnd,omitempty"`
	CtrPort     uint16 `json:"ctrPort"`
}

// Sandbox is a container's networking: its mode, endpoints, ports and namespace.
type Sandbox struct {
	ContainerID string     `json:"containerId"`
	Name        string     `json:"name"`
	Mode        string     `json:"mode"` // bridge (any network), none, host, container:<id>
	Endpoints   []Endpoint `json:"endpoints,omitempty"`
	Ports       []Port     `json:"ports,omitempty"`
	Bound       []Port     `json:"bound,omitempty"`
	// DNS are the resolvers (--dns) the embedded DNS server forwards to instead of the host's.
	DNS    []string `json:"dns,omitempty"`
	NSPath string   `json:"nsPath,omitempty"`
	// persisted tells whether the sandbox has a record in the store (see needsRecord).
	persisted bool
}

// needsRecord tells whether a sandbox holds state that cannot be derived again from the
// container's configuration: its endpoints' addresses, published ports, resolvers. A container
// with none of them (--network none, host, container:) gets no record, and no transaction on
// its create, start and removal; its namespace path derives from its ID (NetnsPath).
func (s *Sandbox) needsRecord() bool {
	return len(s.Endpoints) > 0 || len(s.Ports) > 0 || len(s.Bound) > 0 || len(s.DNS) > 0
}

// adoptNetns sets the namespace path of an unrecorded sandbox whose namespace exists (a running
// container when the daemon restarts).
func (m *Manager) adoptNetns(s *Sandbox) {
	if s.NSPath != "" || s.needsRecord() || len(s.ContainerID) < 16 || s.Mode == "host" || strings.HasPrefix(s.Mode, "container:") {
		return
	}
	if p := m.NetnsPath(s.ContainerID); p != "" {
		if _, err := os.Stat(p); err == nil {
			s.NSPath = p
		}
	}
}

// Manager owns networks and containers' attachments to them.
type Manager struct {
	opts Options
	log  *slog.Logger
	mu   sync.RWMutex
	nets map[string]*Network
	sbs  map[string]*Sandbox
	// live resources of running sandboxes, by container ID.
	proxies map[string][]io.Closer
	dns     map[string]*dnsServer
	// applied describes the rules last written to the kernel.
	applied string
	// bridges are the bridges this manager has set up (address, up, route_localnet), by name,
	// with their interface index: later attachments only check that the index still names an
	// up bridge, one netlink round trip instead of four requests and a sysctl.
	bridges map[string]int
	// ns keeps network namespaces made ahead of need.
	ns *nsPool
}

// New loads networks and sandboxes, creating the predefined networks on first use.
func New(opts Options) (*Manager, error) {
	if opts.DefaultBridge == "" {
		opts.DefaultBridge = "berth0"
	}
	if opts.BridgePrefix == "" {
		opts.BridgePrefix = "br-"
	}
	if opts.Table == "" {
		opts.Table = "berth"
	}
	if opts.ResolvConf == "" {
		opts.ResolvConf = "/etc/resolv.conf"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if len(opts.BridgePrefix) > 12 {
		return nil, fmt.Errorf("bridge prefix %q is too long", opts.BridgePrefix)
	}
	m := &Manager{opts: opts, log: opts.Logger, nets: map[string]*Network{}, sbs: map[string]*Sandbox{},
		proxies: map[string][]io.Closer{}, dns: map[string]*dnsServer{}, bridges: map[string]int{},
		ns: newNSPool(filepath.Join(opts.ExecRoot, "netns"), 2)}
	err := opts.DB.Update(func(tx *bolt.Tx) error {
		nb, err := tx.CreateBucketIfNotExists(networksBucket)
		if err != nil {
			return err
		}
		sb, err := tx.CreateBucketIfNotExists(sandboxesBucket)
		if err != nil {
			return err
		}
		if err := nb.ForEach(func(k, v []byte) error {
			var n Network
			if err := json.Unmarshal(v, &n); err != nil {
				m.log.Warn("skipping unreadable network record", "id", string(k), "err", err)
				return nil
			}
			m.nets[n.ID] = &n
			return nil
		}); err != nil {
			return err
		}
		if err := sb.ForEach(func(k, v []byte) error {
			var s Sandbox
			if err := json.Unmarshal(v, &s); err != nil {
				m.log.Warn("skipping unreadable sandbox record", "id", string(k), "err", err)
				return nil
			}
			s.persisted = true
			m.adoptNetns(&s)
			m.sbs[s.ContainerID] = &s
			return nil
		}); err != nil {
			return err
		}
		for _, pre := range []Network{{Name: DefaultNetwork, Driver: DriverBridge, Bridge: opts.DefaultBridge}, {Name: "host", Driver: DriverHost}, {Name: "none", Driver: DriverNull}} {
			if m.byName(pre.Name) != nil {
				continue
			}
			pre.ID = newID()
			pre.Created = time.Now().UTC()
			if err := putJSON(nb, pre.ID, pre); err != nil {
				return err
			}
			n := pre
			m.nets[n.ID] = &n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load networks: %w", err)
	}
	return m, nil
}

func newID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

func (m *Manager) byName(name string) *Network {
	for _, n := range m.nets {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// lookup resolves a full ID, a name, or a unique ID prefix; m.mu is held.
func (m *Manager) lookup(ref string) (*Network, error) {
	if n, ok := m.nets[ref]; ok {
		return n, nil
	}
	if n := m.byName(ref); n != nil {
		return n, nil
	}
	var found *Network
	for id, n := range m.nets {
		if ref != "" && strings.HasPrefix(id, ref) {
			if found != nil {
				return nil, errdefs.ErrInvalidArgument.WithMessage("network " + ref + " is ambiguous")
			}
			found = n
		}
	}
	if found == nil {
		return nil, errdefs.ErrNotFound.WithMessage("network " + ref + " not found")
	}
	return found, nil
}

// Network returns a network by ID, name or ID prefix.
func (m *Manager) Network(ref string) (Network, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n, err := m.lookup(ref)
	if err != nil {
		return Network{}, err
	}
	return *n, nil
}

// Networks lists every network, sorted by name.
func (m *Manager) Networks() []Network {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Network, 0, len(m.nets))
	for _, n := range m.nets {
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b Network) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Attached lists the sandboxes with an endpoint on a network.
func (m *Manager) Attached(netID string) []Sandbox {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Sandbox
	for _, s := range m.sbs {
		for _, e := range s.Endpoints {
			if e.NetworkID == netID {
				out = append(out, cloneSandbox(s))
				break
			}
		}
	}
	return out
}

// CreateRequest is `network create`.
type CreateRequest struct {
	Name, Driver             string
	Subnet, Gateway, IPRange string
	Internal                 bool
	Labels, Options          map[string]string
}

// CreateNetwork creates a user-defined bridge network and its bridge.
func (m *Manager) CreateNetwork(req CreateRequest) (Network, error) {
	if req.Name == "" {
		return Network{}, errdefs.ErrInvalidArgument.WithMessage("network name is required")
	}
	if req.Driver == "" {
		req.Driver = DriverBridge
	}
	if req.Driver != DriverBridge {
		return Network{}, errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("network driver %q is not supported (use bridge)", req.Driver))
	}
	n := Network{ID: newID(), Name: req.Name, Driver: req.Driver, Created: time.Now().UTC(), Internal: req.Internal,
		Labels: req.Labels, Options: req.Options}
	if v := req.Options[MTUOption]; v != "" {
		mtu, err := strconv.Atoi(v)
		if err != nil || mtu < 68 || mtu > 65535 {
			return Network{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid %s %q", MTUOption, v))
		}
		n.MTU = mtu
	}
	n.Bridge = m.opts.BridgePrefix + n.ID[:15-len(m.opts.BridgePrefix)]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byName(req.Name) != nil {
		return Network{}, errdefs.ErrConflict.WithMessage(fmt.Sprintf("network with name %s already exists", req.Name))
	}
	used := m.usedSubnets()
	if req.Subnet == "" {
		if req.Gateway != "" || req.IPRange != "" {
			return Network{}, errdefs.ErrInvalidArgument.WithMessage("--gateway and --ip-range need --subnet")
		}
		p, err := PickSubnet(false, append(used, hostRoutes()...))
		if err != nil {
			return Network{}, err
		}
		req.Subnet = p.String()
	}
	pool, err := NewPool(req.Subnet, req.Gateway, req.IPRange)
	if err != nil {
		return Network{}, errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	for _, u := range used {
		if u.Overlaps(pool.Subnet) {
			return Network{}, errdefs.ErrConflict.WithMessage(fmt.Sprintf("Pool overlaps with other one on this address space (%s)", u))
		}
	}
	n.Subnet, n.Gateway = pool.Subnet.String(), pool.Gateway.String()
	if req.IPRange != "" {
		n.IPRange = pool.Range.String()
	}
	if _, err := m.bridgeIndex(n.Bridge, netip.PrefixFrom(pool.Gateway, pool.Subnet.Bits()), n.MTU); err != nil {
		return Network{}, err
	}
	if err := m.saveNetwork(&n); err != nil {
		_ = deleteLink(n.Bridge)
		delete(m.bridges, n.Bridge)
		return Network{}, err
	}
	m.nets[n.ID] = &n
	if err := m.syncLocked(); err != nil {
		m.log.Warn("sync nftables", "err", err)
	}
	return n, nil
}

func (m *Manager) usedSubnets() []netip.Prefix {
	var out []netip.Prefix
	for _, n := range m.nets {
		if p, err := netip.ParsePrefix(n.Subnet); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func (m *Manager) saveNetwork(n *Network) error {
	return m.opts.DB.Update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(networksBucket), n.ID, n)
	})
}

// RemoveNetwork deletes a user network that no container uses.
func (m *Manager) RemoveNetwork(ref string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.lookup(ref)
	if err != nil {
		return err
	}
	if n.Predefined() {
		return errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("%s is a pre-defined network and cannot be removed", n.Name))
	}
	for _, s := range m.sbs {
		for _, e := range s.Endpoints {
			if e.NetworkID == n.ID {
				return errdefs.ErrConflict.WithMessage(fmt.Sprintf("error while removing network: network %s has active endpoints (%s)", n.Name, strings.TrimPrefix(s.Name, "/")))
			}
		}
	}
	if err := m.opts.DB.Update(func(tx *bolt.Tx) error { return tx.Bucket(networksBucket).Delete([]byte(n.ID)) }); err != nil {
		return err
	}
	delete(m.nets, n.ID)
	delete(m.bridges, n.Bridge)
	if err := deleteLink(n.Bridge); err != nil {
		m.log.Warn("delete bridge", "bridge", n.Bridge, "err", err)
	}
	return m.syncLocked()
}

// Configure records a container's networking at create. mode is bridge (or a network name),
// none, host or container:<id>; eps name the networks (by ID, name or prefix).
// dnsServers (--dns) replace the host's resolvers as the embedded DNS server's upstreams.
func (m *Manager) Configure(ctrID, name, mode string, eps []EndpointConfig, ports []Port, dnsServers []netip.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &Sandbox{ContainerID: ctrID, Name: name, Mode: mode, Ports: ports}
	for _, a := range dnsServers {
		s.DNS = append(s.DNS, netip.AddrPortFrom(a, 53).String())
	}
	for _, e := range eps {
		n, err := m.lookup(e.NetworkID)
		if err != nil {
			return err
		}
		if n.Driver != DriverBridge {
			return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("container cannot be connected to network %s together with others", n.Name))
		}
		if e.IPv4 != "" {
			if n.Name == DefaultNetwork {
				return errdefs.ErrInvalidArgument.WithMessage("user specified IP address is supported on user defined networks only")
			}
			a, err := netip.ParseAddr(e.IPv4)
			if err != nil || !a.Is4() {
				return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid IPv4 address %q", e.IPv4))
			}
		}
		if len(e.Aliases) > 0 && n.Name == DefaultNetwork {
			return errdefs.ErrInvalidArgument.WithMessage("network-scoped alias is supported only for containers in user defined networks")
		}
		e.NetworkID = n.ID
		s.Endpoints = append(s.Endpoints, Endpoint{EndpointConfig: e, ID: newID()})
	}
	if !s.needsRecord() {
		m.adoptNetns(s)
		m.sbs[ctrID] = s
		return nil
	}
	return m.saveSandbox(s)
}

func (m *Manager) saveSandbox(s *Sandbox) error {
	if err := m.opts.DB.Update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(sandboxesBucket), s.ContainerID, s)
	}); err != nil {
		return fmt.Errorf("save network state of %s: %w", s.ContainerID, err)
	}
	s.persisted = true
	m.sbs[s.ContainerID] = s
	return nil
}

// Sandbox returns a copy of a container's networking.
func (m *Manager) Sandbox(ctrID string) (Sandbox, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, ok := m.sbs[ctrID]
	if !ok {
		return Sandbox{}, false
	}
	return cloneSandbox(s), true
}

func cloneSandbox(s *Sandbox) Sandbox {
	c := *s
	c.Endpoints = slices.Clone(s.Endpoints)
	c.Ports = slices.Clone(s.Ports)
	c.Bound = slices.Clone(s.Bound)
	return c
}

// NetnsPath is where a container's network namespace is bind-mounted.
func (m *Manager) NetnsPath(ctrID string) string {
	return filepath.Join(m.opts.ExecRoot, "netns", ctrID[:16])
}

// Up creates the container's network namespace (for bridge and none modes), attaches its
// endpoints, publishes its ports and starts its DNS server. It returns the sandbox.
func (m *Manager) Up(ctx context.Context, ctrID string) (Sandbox, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sbs[ctrID]
	if !ok {
		return Sandbox{}, errdefs.ErrNotFound.WithMessage("no network configuration for container " + ctrID)
	}
	if s.Mode == "host" || strings.HasPrefix(s.Mode, "container:") {
		return cloneSandbox(s), nil
	}
	if s.NSPath != "" {
		m.downLocked(s)
	}
	t0 := time.Now()
	phase := func(name string) {
		m.log.Debug("network up", "container", ctrID[:12], "phase", name, "at", time.Since(t0))
	}
	path := m.NetnsPath(ctrID)
	_ = removeNetns(path)
	if err := m.ns.take(path); err != nil {
		return Sandbox{}, err
	}
	phase("netns")
	s.NSPath = path
	ok = false
	defer func() {
		if !ok {
			m.downLocked(s)
		}
	}()
	if len(s.Endpoints) > 0 {
		if err := enableForwarding(); err != nil {
			return Sandbox{}, fmt.Errorf("enable IP forwarding: %w", err)
		}
	}
	for i := range s.Endpoints {
		if err := m.attachLocked(s, i); err != nil {
			return Sandbox{}, err
		}
	}
	phase("endpoints")
	if err := m.publishLocked(s); err != nil {
		return Sandbox{}, err
	}
	if err := m.startDNSLocked(s); err != nil {
		return Sandbox{}, err
	}
	phase("ports and DNS")
	// A sandbox without endpoints (--network none) has nothing to record but its namespace's
	// path, which derives from the container ID (NetnsPath): no transaction on its start path.
	if s.needsRecord() || s.persisted {
		if err := m.saveSandbox(s); err != nil {
			return Sandbox{}, err
		}
	}
	phase("saved")
	if err := m.syncLocked(); err != nil {
		return Sandbox{}, err
	}
	phase("nftables")
	ok = true
	return cloneSandbox(s), nil
}

// attachLocked gives endpoint i an address and its interface in the namespace.
func (m *Manager) attachLocked(s *Sandbox, i int) error {
	e := &s.Endpoints[i]
	n, ok := m.nets[e.NetworkID]
	if !ok {
		return errdefs.ErrNotFound.WithMessage("network " + e.NetworkID + " not found")
	}
	if n.Subnet == "" {
		// The default bridge picks its subnet on first use, avoiding the host's routes.
		p, err := PickSubnet(true, append(m.usedSubnets(), hostRoutes()...))
		if err != nil {
			return err
		}
		n.Subnet, n.Gateway = p.String(), p.Addr().Next().String()
		if err := m.saveNetwork(n); err != nil {
			return err
		}
	}
	pool, err := n.pool()
	if err != nil {
		return err
	}
	brIndex, err := m.bridgeIndex(n.Bridge, netip.PrefixFrom(pool.Gateway, pool.Subnet.Bits()), n.MTU)
	if err != nil {
		return err
	}
	var want netip.Addr
	if e.IPv4 != "" {
		want, _ = netip.ParseAddr(e.IPv4)
	}
	a, err := pool.Allocate(m.usedAddrs(n.ID), want)
	if err != nil {
		return errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	idx := 0
	for slices.ContainsFunc(s.Endpoints, func(o Endpoint) bool { return o.IfName == "eth"+strconv.Itoa(idx) }) {
		idx++
	}
	cfg := ifaceConfig{
		HostVeth: "vb" + e.ID[:11],
		IfName:   "eth" + strconv.Itoa(idx),
		Bridge:   n.Bridge,
		Addr:     netip.PrefixFrom(a, pool.Subnet.Bits()),
		MAC:      MAC(a),
		MTU:      n.MTU,
	}
	if i == m.gatewayIndex(s) {
		cfg.Gateway = pool.Gateway
	}
	t0 := time.Now()
	if err := attachVeth(s.NSPath, brIndex, cfg); err != nil {
		return err
	}
	m.log.Debug("network attach", "veth", cfg.HostVeth, "took", time.Since(t0))
	e.IP, e.MAC, e.IfName, e.HostVeth = a.String(), cfg.MAC, cfg.IfName, cfg.HostVeth
	return nil
}

// bridgeIndex sets up a network's bridge on its first use by this manager and returns its
// interface index; later calls only check that the bridge is still there and up (someone may
// have deleted it), and set it up again if not. m.mu is held.
func (m *Manager) bridgeIndex(name string, gw netip.Prefix, mtu int) (int, error) {
	if idx, ok := m.bridges[name]; ok {
		if l, err := netlink.LinkByName(name); err == nil && l.Attrs().Index == idx && l.Attrs().Flags&net.FlagUp != 0 && l.Type() == "bridge" {
			return idx, nil
		}
		delete(m.bridges, name)
	}
	l, err := ensureBridge(name, gw, mtu)
	if err != nil {
		return 0, err
	}
	m.bridges[name] = l.Attrs().Index
	return l.Attrs().Index, nil
}

// gatewayIndex is the endpoint that carries the default route: the first one that is not on
// an internal network (internal networks have no way out), or -1.
func (m *Manager) gatewayIndex(s *Sandbox) int {
	for i, e := range s.Endpoints {
		if n, ok := m.nets[e.NetworkID]; ok && !n.Internal {
			return i
		}
	}
	return -1
}

func (m *Manager) usedAddrs(netID string) []netip.Addr {
	var out []netip.Addr
	for _, s := range m.sbs {
		for _, e := range s.Endpoints {
			if e.NetworkID == netID && e.IP != "" {
				if a, err := netip.ParseAddr(e.IP); err == nil {
					out = append(out, a)
				}
			}
		}
	}
	return out
}

// ctrIP is the address published ports forward to: the gateway endpoint's (or the first).
func (m *Manager) ctrIP(s *Sandbox) (netip.Addr, bool) {
	if len(s.Endpoints) == 0 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s.Endpoints[max(m.gatewayIndex(s), 0)].IP)
	return a, err == nil
}

// publishLocked binds the proxies of the sandbox's ports, resolving free host ports.
func (m *Manager) publishLocked(s *Sandbox) error {
	s.Bound = nil
	if len(s.Ports) == 0 {
		return nil
	}
	ip, ok := m.ctrIP(s)
	if !ok {
		return nil
	}
	for _, p := range s.Ports {
		var hostIP netip.Addr
		if p.HostIP != "" {
			a, err := netip.ParseAddr(p.HostIP)
			if err != nil || !a.Is4() {
				return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid host IP %q", p.HostIP))
			}
			hostIP = a
		}
		var px *proxy
		var port uint16
		var err error
		for hp := int(p.HostPort); ; hp++ {
			px, port, err = startProxy(p.Proto, hostIP, uint16(hp), netip.AddrPortFrom(ip, p.CtrPort), m.log)
			if err == nil || hp >= int(p.HostPortEnd) {
				break
			}
		}
		if err != nil {
			return errdefs.ErrConflict.WithMessage(fmt.Sprintf("driver failed programming external connectivity on endpoint %s: %v", strings.TrimPrefix(s.Name, "/"), err))
		}
		m.proxies[s.ContainerID] = append(m.proxies[s.ContainerID], px)
		b := p
		b.HostPort, b.HostPortEnd = port, 0
		s.Bound = append(s.Bound, b)
	}
	return nil
}

// startDNSLocked serves the embedded DNS inside the namespace when the container is on a
// user-defined network.
func (m *Manager) startDNSLocked(s *Sandbox) error {
	if _, ok := m.dns[s.ContainerID]; ok || !m.wantsDNS(s) {
		return nil
	}
	id := s.ContainerID
	upstream := s.DNS
	if len(upstream) == 0 {
		upstream = hostResolvers(m.opts.ResolvConf)
	}
	srv, err := startDNS(s.NSPath, func(name string) ([]netip.Addr, bool) { return m.resolve(id, name) }, upstream, m.log)
	if err != nil {
		return err
	}
	m.dns[id] = srv
	return nil
}

// WantsDNS reports whether a container's resolv.conf should point at the embedded DNS.
func (m *Manager) WantsDNS(ctrID string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, ok := m.sbs[ctrID]
	return ok && m.wantsDNS(s)
}

func (m *Manager) wantsDNS(s *Sandbox) bool {
	for _, e := range s.Endpoints {
		if n, ok := m.nets[e.NetworkID]; ok && n.UserDefined() {
			return true
		}
	}
	return false
}

// resolve answers a DNS name for container ctrID from the records of the user networks it is
// on: other containers' names, short IDs and aliases on those networks.
func (m *Manager) resolve(ctrID, name string) ([]netip.Addr, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	self, ok := m.sbs[ctrID]
	if !ok {
		return nil, false
	}
	var out []netip.Addr
	found := false
	for _, se := range self.Endpoints {
		n, ok := m.nets[se.NetworkID]
		if !ok || !n.UserDefined() {
			continue
		}
		for _, s := range m.sbs {
			for _, e := range s.Endpoints {
				if e.NetworkID != n.ID || e.IP == "" {
					continue
				}
				match := strings.EqualFold(strings.TrimPrefix(s.Name, "/"), name) || name == s.ContainerID[:12]
				for _, a := range e.Aliases {
					match = match || strings.EqualFold(a, name)
				}
				if match {
					found = true
					if a, err := netip.ParseAddr(e.IP); err == nil && !slices.Contains(out, a) {
						out = append(out, a)
					}
				}
			}
		}
	}
	return out, found
}

// Down undoes Up: the DNS server and proxies stop, the namespace (and with it the veths) is
// deleted, addresses are released.
func (m *Manager) Down(ctrID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sbs[ctrID]
	if !ok {
		return
	}
	t0 := time.Now()
	m.downLocked(s)
	t1 := time.Now()
	// The record is not rewritten: the stored one still names the namespace, and a daemon that
	// starts with it finds the container not running and takes it down (Reconcile), while this
	// daemon allocates from memory. That saves an fsync on every container exit.
	if err := m.syncLocked(); err != nil {
		m.log.Warn("sync nftables", "err", err)
	}
	m.log.Debug("network down", "container", ctrID[:12], "down", t1.Sub(t0), "nftables", time.Since(t1))
}

func (m *Manager) downLocked(s *Sandbox) {
	if srv, ok := m.dns[s.ContainerID]; ok {
		_ = srv.Close()
		delete(m.dns, s.ContainerID)
	}
	for _, p := range m.proxies[s.ContainerID] {
		_ = p.Close()
	}
	delete(m.proxies, s.ContainerID)
	for i := range s.Endpoints {
		e := &s.Endpoints[i]
		if e.HostVeth != "" && s.NSPath == "" {
			_ = deleteLink(e.HostVeth)
		}
		// With the namespace gone the kernel deletes the veth pairs in the background:
		// deleting them here would cost tens of milliseconds on every container exit.
		e.IP, e.MAC, e.IfName, e.HostVeth = "", "", "", ""
	}
	path := s.NSPath
	if path == "" && len(s.ContainerID) >= 16 && s.Mode != "host" && !strings.HasPrefix(s.Mode, "container:") {
		// An endpoint-less sandbox's path is not recorded (see Up); it may exist all the same.
		path = m.NetnsPath(s.ContainerID)
	}
	if path != "" {
		if err := removeNetns(path); err != nil {
			m.log.Warn("remove netns", "path", path, "err", err)
		}
	}
	s.NSPath = ""
	s.Bound = nil
}

// Forget deletes a container's networking for good (container removal).
func (m *Manager) Forget(ctrID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sbs[ctrID]
	if !ok {
		return
	}
	m.downLocked(s)
	if s.persisted {
		if err := m.opts.DB.Update(func(tx *bolt.Tx) error { return tx.Bucket(sandboxesBucket).Delete([]byte(ctrID)) }); err != nil {
			m.log.Warn("delete network state", "container", ctrID, "err", err)
		}
	}
	delete(m.sbs, ctrID)
	if err := m.syncLocked(); err != nil {
		m.log.Warn("sync nftables", "err", err)
	}
}

// Connect attaches a container to one more network, live if it runs.
func (m *Manager) Connect(ctrID, netRef string, cfg EndpointConfig) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sbs[ctrID]
	if !ok {
		return errdefs.ErrNotFound.WithMessage("no network configuration for container " + ctrID)
	}
	n, err := m.lookup(netRef)
	if err != nil {
		return err
	}
	if n.Driver != DriverBridge {
		return errdefs.ErrInvalidArgument.WithMessage("container cannot be disconnected from host network or connected to host network")
	}
	if s.Mode == "host" || s.Mode == "none" || strings.HasPrefix(s.Mode, "container:") {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("container sharing network namespace with another container or host cannot be connected to any other network (mode %s)", s.Mode))
	}
	for _, e := range s.Endpoints {
		if e.NetworkID == n.ID {
			return errdefs.ErrConflict.WithMessage(fmt.Sprintf("endpoint with name %s already exists in network %s", strings.TrimPrefix(s.Name, "/"), n.Name))
		}
	}
	cfg.NetworkID = n.ID
	s.Endpoints = append(s.Endpoints, Endpoint{EndpointConfig: cfg, ID: newID()})
	if s.NSPath != "" {
		if err := m.attachLocked(s, len(s.Endpoints)-1); err != nil {
			s.Endpoints = s.Endpoints[:len(s.Endpoints)-1]
			return err
		}
		if err := m.startDNSLocked(s); err != nil {
			m.log.Warn("embedded DNS", "container", ctrID, "err", err)
		}
	}
	if err := m.saveSandbox(s); err != nil {
		return err
	}
	return m.syncLocked()
}

// Disconnect detaches a container from a network, live if it runs.
func (m *Manager) Disconnect(ctrID, netRef string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sbs[ctrID]
	if !ok {
		return errdefs.ErrNotFound.WithMessage("no network configuration for container " + ctrID)
	}
	n, err := m.lookup(netRef)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(s.Endpoints, func(e Endpoint) bool { return e.NetworkID == n.ID })
	if i < 0 {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("container %s is not connected to network %s", strings.TrimPrefix(s.Name, "/"), n.Name))
	}
	if hv := s.Endpoints[i].HostVeth; hv != "" {
		if err := deleteLink(hv); err != nil {
			return err
		}
	}
	s.Endpoints = slices.Delete(s.Endpoints, i, i+1)
	if err := m.saveSandbox(s); err != nil {
		return err
	}
	return m.syncLocked()
}

// syncLocked rewrites the nftables table from the networks and the running sandboxes.
func (m *Manager) syncLocked() error {
	var nets []ruleNet
	for _, n := range m.nets {
		if n.Driver != DriverBridge || n.Subnet == "" {
			continue
		}
		p, err := netip.ParsePrefix(n.Subnet)
		if err != nil {
			continue
		}
		nets = append(nets, ruleNet{Bridge: n.Bridge, Subnet: p, Internal: n.Internal})
	}
	slices.SortFunc(nets, func(a, b ruleNet) int { return strings.Compare(a.Bridge, b.Bridge) })
	var ports []rulePort
	for _, s := range m.sbs {
		ip, ok := m.ctrIP(s)
		if !ok || s.NSPath == "" {
			continue
		}
		for _, b := range s.Bound {
			hip, _ := netip.ParseAddr(b.HostIP)
			ports = append(ports, rulePort{Proto: b.Proto, HostIP: hip, HostPort: b.HostPort, CtrIP: ip, CtrPort: b.CtrPort})
		}
	}
	slices.SortFunc(ports, func(a, b rulePort) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	// Most starts and exits change no rule (no published port, no new network): skip the
	// netlink round trip then.
	key := fmt.Sprint(nets, ports)
	if key == m.applied {
		return nil
	}
	if err := syncRules(m.opts.Table, nets, ports); err != nil {
		m.applied = ""
		return err
	}
	m.applied = key
	return nil
}

// Reconcile runs at daemon start: sandboxes of running containers get their proxies and DNS
// servers back, the others are taken down; netns files nobody uses are removed; the nftables
// table is rebuilt from the store.
func (m *Manager) Reconcile(running func(ctrID string) bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	keep := map[string]bool{}
	for id, s := range m.sbs {
		if s.NSPath == "" {
			continue
		}
		if !running(id) {
			m.downLocked(s)
			if s.persisted {
				_ = m.saveSandbox(s)
			}
			continue
		}
		keep[filepath.Base(s.NSPath)] = true
		if len(m.proxies[id]) > 0 || m.dns[id] != nil {
			continue // brought up by this daemon already (a restart policy)
		}
		// Re-bind the same host ports the container had.
		want := s.Ports
		if len(s.Bound) == len(s.Ports) {
			want = s.Bound
		}
		saved := s.Ports
		s.Ports = want
		if err := m.publishLocked(s); err != nil {
			m.log.Warn("republish ports", "container", id, "err", err)
		}
		s.Ports = saved
		if err := m.startDNSLocked(s); err != nil {
			m.log.Warn("embedded DNS", "container", id, "err", err)
		}
		if s.needsRecord() {
			_ = m.saveSandbox(s)
		}
	}
	dir := filepath.Join(m.opts.ExecRoot, "netns")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if p := filepath.Join(dir, e.Name()); !keep[e.Name()] && !m.ns.has(p) {
			_ = removeNetns(p)
		}
	}
	m.removeStaleVeths()
	// Bridges of an older daemon may lack route_localnet, without which the restored ports'
	// DNAT from 127.0.0.1 would be dropped; the first attachment would fix it, too late.
	for _, n := range m.nets {
		if n.Bridge == "" || n.Subnet == "" {
			continue
		}
		if _, err := os.Stat("/proc/sys/net/ipv4/conf/" + n.Bridge); err == nil {
			if err := setSysctl("net/ipv4/conf/"+n.Bridge+"/route_localnet", "1"); err != nil {
				m.log.Warn("bridge route_localnet", "bridge", n.Bridge, "err", err)
			}
		}
	}
	return m.syncLocked()
}

// removeStaleVeths deletes host veth ends on berth's bridges that no sandbox owns.
func (m *Manager) removeStaleVeths() {
	owned := map[string]bool{}
	for _, s := range m.sbs {
		for _, e := range s.Endpoints {
			if e.HostVeth != "" {
				owned[e.HostVeth] = true
			}
		}
	}
	bridges := map[int]bool{}
	for _, n := range m.nets {
		if n.Bridge == "" {
			continue
		}
		if l, err := netlink.LinkByName(n.Bridge); err == nil {
			bridges[l.Attrs().Index] = true
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		return
	}
	for _, l := range links {
		a := l.Attrs()
		if l.Type() == "veth" && bridges[a.MasterIndex] && !owned[a.Name] {
			_ = netlink.LinkDel(l)
		}
	}
}

// Close stops the proxies and DNS servers; the kernel state stays for the next daemon.
func (m *Manager) Close() {
	m.ns.close()
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, srv := range m.dns {
		_ = srv.Close()
		delete(m.dns, id)
	}
	for id, ps := range m.proxies {
		for _, p := range ps {
			_ = p.Close()
		}
		delete(m.proxies, id)
	}
}

// Teardown removes everything berth made in the kernel: sandboxes, bridges and the nftables
// table. Tests call it; a daemon shutting down does not.
func (m *Manager) Teardown() error {
	m.Close()
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, s := range m.sbs {
		m.downLocked(s)
	}
	for _, n := range m.nets {
		if n.Bridge != "" {
			errs = append(errs, deleteLink(n.Bridge))
			delete(m.bridges, n.Bridge)
		}
	}
	errs = append(errs, deleteRules(m.opts.Table))
	m.applied = ""
	return errors.Join(errs...)
}
