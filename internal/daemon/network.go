package daemon

import (
	"context"
	"fmt"
	"github.com/berth-dev/berth/internal/fsutil"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/api"
	bnet "github.com/berth-dev/berth/internal/network"
	"github.com/containerd/errdefs"
	mcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"
)

// openNetworks starts the network manager on the daemon's store.
func (d *Daemon) openNetworks() error {
	m, err := bnet.New(bnet.Options{
		DB:            d.db,
		ExecRoot:      d.cfg.ExecRoot,
		Logger:        d.log.With("component", "network"),
		DefaultBridge: d.cfg.Bridge,
		BridgePrefix:  d.cfg.BridgePrefix,
		Table:         d.cfg.NFTable,
	})
	if err != nil {
		return err
	}
	d.net = m
	return nil
}

// reconcileNetworks runs after the containers are restored: running containers get their
// published ports and DNS back, everything else berth left in the kernel is cleaned up.
func (d *Daemon) reconcileNetworks() error {
	running := map[string]bool{}
	for _, c := range d.ctrs.all() {
		c.mu.Lock()
		if c.running() {
			running[c.rec.ID] = true
		}
		// Sandboxes with nothing to record (--network none, host) are not in the store: make
		// them again from the container's configuration (finding a running one's namespace).
		if _, ok := d.net.Sandbox(c.rec.ID); !ok && c.rec.Config != nil && c.rec.HostConfig != nil {
			if err := d.configureNetwork(c.rec.ID, c.rec.Name, c.rec.Config, c.rec.HostConfig, nil); err != nil {
				d.log.Warn("network configuration", "container", c.rec.ID[:12], "err", err)
			}
		}
		c.mu.Unlock()
	}
	return d.net.Reconcile(func(id string) bool { return running[id] })
}

// configureNetwork records a new container's networks and published ports.
func (d *Daemon) configureNetwork(id, name string, cfg *mcontainer.Config, hc *mcontainer.HostConfig, nc *network.NetworkingConfig) error {
	mode := string(hc.NetworkMode)
	var eps []bnet.EndpointConfig
	// The docker CLI names the endpoint of the default network "default".
	if nc != nil && nc.EndpointsConfig["default"] != nil {
		nc = &network.NetworkingConfig{EndpointsConfig: maps.Clone(nc.EndpointsConfig)}
		if _, ok := nc.EndpointsConfig[bnet.DefaultNetwork]; !ok {
			nc.EndpointsConfig[bnet.DefaultNetwork] = nc.EndpointsConfig["default"]
		}
		delete(nc.EndpointsConfig, "default")
	}
	endpoint := func(netName string) bnet.EndpointConfig {
		e := bnet.EndpointConfig{NetworkID: netName}
		if nc != nil {
			if es := nc.EndpointsConfig[netName]; es != nil {
				e.Aliases = slices.Clone(es.Aliases)
				if es.IPAMConfig != nil && es.IPAMConfig.IPv4Address.IsValid() {
					e.IPv4 = es.IPAMConfig.IPv4Address.String()
				}
			}
		}
		return e
	}
	switch {
	case mode == "none", mode == "host":
	case strings.HasPrefix(mode, "container:"):
		other, err := d.ctrs.get(strings.TrimPrefix(mode, "container:"))
		if err != nil {
			return err
		}
		if other.rec.ID == id {
			return invalid(fmt.Errorf("cannot join own network namespace"))
		}
		mode = "container:" + other.rec.ID
		hc.NetworkMode = mcontainer.NetworkMode(mode)
	default:
		eps = append(eps, endpoint(mode))
		if nc != nil {
			var extra []string
			for k := range nc.EndpointsConfig {
				if k != mode && k != "none" && k != "host" {
					extra = append(extra, k)
				}
			}
			slices.Sort(extra)
			for _, k := range extra {
				eps = append(eps, endpoint(k))
			}
		}
		mode = "bridge"
	}
	if mode != "bridge" && (len(hc.PortBindings) > 0 || hc.PublishAllPorts) {
		// Docker ignores published ports without a network of the container's own; so do we.
		hc.PortBindings, hc.PublishAllPorts = nil, false
	}
	ports, err := portsOf(cfg, hc)
	if err != nil {
		return invalid(err)
	}
	if err := d.net.Configure(id, name, mode, eps, ports, hc.DNS); err != nil {
		if errdefs.IsNotFound(err) {
			// A 404 here would make the docker CLI think the image is missing and pull it.
			return errdefs.ErrInvalidArgument.WithMessage(err.Error())
		}
		return err
	}
	return nil
}

// portsOf turns -p and -P into the ports to publish.
func portsOf(cfg *mcontainer.Config, hc *mcontainer.HostConfig) ([]bnet.Port, error) {
	var out []bnet.Port
	keys := make([]network.Port, 0, len(hc.PortBindings))
	for p := range hc.PortBindings {
		keys = append(keys, p)
	}
	slices.SortFunc(keys, func(a, b network.Port) int { return strings.Compare(a.String(), b.String()) })
	for _, p := range keys {
		proto := string(p.Proto())
		if proto != "tcp" && proto != "udp" {
			return nil, fmt.Errorf("invalid port %s: only tcp and udp ports can be published", p)
		}
		for _, b := range hc.PortBindings[p] {
			bp := bnet.Port{Proto: proto, CtrPort: p.Num()}
			if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
				if !b.HostIP.Is4() {
					continue // IPv6 publishing is not supported yet; Docker's CLI sends "::" pairs
				}
				bp.HostIP = b.HostIP.String()
			}
			if b.HostPort != "" {
				lo, hi, isRange := strings.Cut(b.HostPort, "-")
				l, err := strconv.ParseUint(lo, 10, 16)
				if err != nil {
					return nil, fmt.Errorf("invalid host port %q", b.HostPort)
				}
				bp.HostPort = uint16(l)
				if isRange {
					h, err := strconv.ParseUint(hi, 10, 16)
					if err != nil || h < l {
						return nil, fmt.Errorf("invalid host port range %q", b.HostPort)
					}
					bp.HostPortEnd = uint16(h)
				}
			}
			if !slices.Contains(out, bp) {
				out = append(out, bp)
			}
		}
	}
	if hc.PublishAllPorts {
		exp := make([]network.Port, 0, len(cfg.ExposedPorts))
		for p := range cfg.ExposedPorts {
			if _, bound := hc.PortBindings[p]; !bound {
				exp = append(exp, p)
			}
		}
		slices.SortFunc(exp, func(a, b network.Port) int { return strings.Compare(a.String(), b.String()) })
		for _, p := range exp {
			if pr := string(p.Proto()); pr == "tcp" || pr == "udp" {
				out = append(out, bnet.Port{Proto: pr, CtrPort: p.Num()})
			}
		}
	}
	return out, nil
}

// netUp brings up a container's network before its start and returns the namespace to join
// ("" for the host's). It also writes the container's /etc/hosts and resolv.conf.
func (d *Daemon) netUp(ctx context.Context, rec *ctrRecord) (string, error) {
	mode := string(rec.HostConfig.NetworkMode)
	if other, ok := strings.CutPrefix(mode, "container:"); ok {
		oc, err := d.ctrs.get(other)
		if err != nil {
			return "", err
		}
		or := oc.snapshotOf()
		if or.State.Status != mcontainer.StateRunning || or.State.Pid == 0 {
			return "", conflict(fmt.Sprintf("cannot join network namespace of a non running container: container %s is %s", strings.TrimPrefix(or.Name, "/"), or.State.Status))
		}
		if sb, ok := d.net.Sandbox(or.ID); ok && sb.NSPath != "" {
			return sb.NSPath, nil
		}
		return fmt.Sprintf("/proc/%d/ns/net", or.State.Pid), nil
	}
	if mode == "host" {
		return "", nil
	}
	if _, ok := d.net.Sandbox(rec.ID); !ok {
		// A container from before networking existed: give it its mode's configuration.
		if err := d.configureNetwork(rec.ID, rec.Name, rec.Config, rec.HostConfig, nil); err != nil {
			return "", err
		}
	}
	sb, err := d.net.Up(ctx, rec.ID)
	if err != nil {
		return "", err
	}
	if err := d.writeNetEtc(rec, sb); err != nil {
		d.net.Down(rec.ID)
		return "", err
	}
	return sb.NSPath, nil
}

// writeNetEtc puts the container's own addresses into its /etc/hosts and, on user networks,
// points resolv.conf at the embedded DNS server. Files whose content does not change are not
// rewritten (an atomic write costs an fsync on the start path).
func (d *Daemon) writeNetEtc(rec *ctrRecord, sb bnet.Sandbox) error {
	dir := d.ctrDir(rec.ID)
	host := rec.Config.Hostname
	hostsPath := filepath.Join(dir, "hosts")
	b, err := os.ReadFile(hostsPath)
	if err != nil {
		return fmt.Errorf("read hosts file: %w", err)
	}
	// Drop the lines an earlier start added (address, tab, hostname), then add today's.
	var hosts strings.Builder
	for _, l := range strings.SplitAfter(string(b), "\n") {
		ip, name, ok := strings.Cut(strings.TrimSuffix(l, "\n"), "\t")
		if _, err := netip.ParseAddr(ip); ok && err == nil && name == host {
			continue
		}
		hosts.WriteString(l)
	}
	for _, e := range sb.Endpoints {
		if e.IP != "" {
			hosts.WriteString(e.IP + "\t" + host + "\n")
		}
	}
	if hosts.String() != string(b) {
		if err := fsutil.ReplaceFile(hostsPath, []byte(hosts.String()), 0o644); err != nil {
			return err
		}
	}
	if !d.net.WantsDNS(rec.ID) {
		return nil
	}
	rc := "nameserver " + bnet.DNSAddr + "\n"
	for _, l := range strings.Split(resolvConf(rec.HostConfig), "\n") {
		if strings.HasPrefix(l, "search ") || strings.HasPrefix(l, "options ") {
			rc += l + "\n"
		}
	}
	if !strings.Contains(rc, "options ") {
		rc += "options ndots:0\n"
	}
	rcPath := filepath.Join(dir, "resolv.conf")
	if old, err := os.ReadFile(rcPath); err == nil && string(old) == rc {
		return nil
	}
	return fsutil.ReplaceFile(rcPath, []byte(rc), 0o644)
}

// networkSettings is the NetworkSettings of inspect.
func (d *Daemon) networkSettings(r *ctrRecord) *mcontainer.NetworkSettings {
	ns := &mcontainer.NetworkSettings{Ports: network.PortMap{}, Networks: map[string]*network.EndpointSettings{}}
	sb, ok := d.net.Sandbox(r.ID)
	if !ok {
		if nm := string(r.HostConfig.NetworkMode); nm != "" {
			ns.Networks[nm] = &network.EndpointSettings{}
		}
		return ns
	}
	ns.SandboxKey = sb.NSPath
	if sb.NSPath != "" {
		ns.SandboxID = r.ID
	}
	ns.Networks = d.endpointSettings(sb)
	if sb.Mode == "none" || sb.Mode == "host" {
		n, err := d.net.Network(sb.Mode)
		if err == nil {
			ns.Networks[sb.Mode] = &network.EndpointSettings{NetworkID: n.ID}
		}
	}
	for p := range r.Config.ExposedPorts {
		ns.Ports[p] = nil
	}
	for _, p := range sb.Ports {
		if pp, ok := network.PortFrom(p.CtrPort, network.IPProtocol(p.Proto)); ok {
			if _, seen := ns.Ports[pp]; !seen {
				ns.Ports[pp] = nil
			}
		}
	}
	for _, b := range sb.Bound {
		pp, ok := network.PortFrom(b.CtrPort, network.IPProtocol(b.Proto))
		if !ok {
			continue
		}
		hip := netip.IPv4Unspecified()
		if a, err := netip.ParseAddr(b.HostIP); err == nil {
			hip = a
		}
		ns.Ports[pp] = append(ns.Ports[pp], network.PortBinding{HostIP: hip, HostPort: strconv.Itoa(int(b.HostPort))})
	}
	return ns
}

func (d *Daemon) endpointSettings(sb bnet.Sandbox) map[string]*network.EndpointSettings {
	out := map[string]*network.EndpointSettings{}
	for _, e := range sb.Endpoints {
		n, err := d.net.Network(e.NetworkID)
		if err != nil {
			continue
		}
		es := &network.EndpointSettings{NetworkID: n.ID, Aliases: e.Aliases}
		if e.IPv4 != "" {
			if a, err := netip.ParseAddr(e.IPv4); err == nil {
				es.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: a}
			}
		}
		if e.IP != "" {
			es.EndpointID = e.ID
			es.IPAddress, _ = netip.ParseAddr(e.IP)
			es.Gateway, _ = netip.ParseAddr(n.Gateway)
			if p, err := netip.ParsePrefix(n.Subnet); err == nil {
				es.IPPrefixLen = p.Bits()
			}
			if mac, err := parseMAC(e.MAC); err == nil {
				es.MacAddress = mac
			}
		}
		if n.UserDefined() {
			es.DNSNames = append([]string{strings.TrimPrefix(sb.Name, "/"), sb.ContainerID[:12]}, e.Aliases...)
		}
		out[n.Name] = es
	}
	return out
}

func parseMAC(s string) (network.HardwareAddr, error) {
	var m network.HardwareAddr
	err := m.UnmarshalText([]byte(s))
	return m, err
}

// onNetwork is ps's network filter: the container has an endpoint on the network (by name or
// ID), or runs in that mode (host, none).
func (d *Daemon) onNetwork(r *ctrRecord, ref string) bool {
	n, err := d.net.Network(ref)
	if err != nil {
		return false
	}
	if string(r.HostConfig.NetworkMode) == n.Name {
		return true
	}
	sb, ok := d.net.Sandbox(r.ID)
	return ok && slices.ContainsFunc(sb.Endpoints, func(e bnet.Endpoint) bool { return e.NetworkID == n.ID })
}

// portSummary is the Ports column of ps.
func (d *Daemon) portSummary(r *ctrRecord) []mcontainer.PortSummary {
	out := []mcontainer.PortSummary{}
	sb, _ := d.net.Sandbox(r.ID)
	bound := map[string]bool{}
	for _, b := range sb.Bound {
		hip := netip.IPv4Unspecified()
		if a, err := netip.ParseAddr(b.HostIP); err == nil {
			hip = a
		}
		out = append(out, mcontainer.PortSummary{IP: hip, PrivatePort: b.CtrPort, PublicPort: b.HostPort, Type: b.Proto})
		bound[fmt.Sprintf("%d/%s", b.CtrPort, b.Proto)] = true
	}
	for p := range r.Config.ExposedPorts {
		if !bound[p.String()] {
			out = append(out, mcontainer.PortSummary{PrivatePort: p.Num(), Type: string(p.Proto())})
		}
	}
	slices.SortFunc(out, func(a, b mcontainer.PortSummary) int { return int(a.PrivatePort) - int(b.PrivatePort) })
	return out
}

// --- /networks endpoints (api.NetworkBackend) ---

func (d *Daemon) inspectNetwork(n bnet.Network) network.Inspect {
	out := network.Inspect{
		Network: network.Network{
			Name: n.Name, ID: n.ID, Created: n.Created, Scope: "local", Driver: n.Driver,
			EnableIPv4: n.Driver == bnet.DriverBridge, Internal: n.Internal, Attachable: false,
			IPAM:    network.IPAM{Driver: "default", Options: map[string]string{}, Config: []network.IPAMConfig{}},
			Options: map[string]string{}, Labels: map[string]string{},
		},
		Containers: map[string]network.EndpointResource{},
	}
	for k, v := range n.Options {
		out.Options[k] = v
	}
	for k, v := range n.Labels {
		out.Labels[k] = v
	}
	if n.Name == bnet.DefaultNetwork {
		out.Options["com.docker.network.bridge.name"] = n.Bridge
		out.Options["com.docker.network.bridge.default_bridge"] = "true"
	}
	if s, err := netip.ParsePrefix(n.Subnet); err == nil {
		c := network.IPAMConfig{Subnet: s}
		c.Gateway, _ = netip.ParseAddr(n.Gateway)
		if r, err := netip.ParsePrefix(n.IPRange); err == nil {
			c.IPRange = r
		}
		out.IPAM.Config = append(out.IPAM.Config, c)
	}
	for _, sb := range d.net.Attached(n.ID) {
		for _, e := range sb.Endpoints {
			if e.NetworkID != n.ID || e.IP == "" {
				continue
			}
			er := network.EndpointResource{Name: strings.TrimPrefix(sb.Name, "/"), EndpointID: e.ID}
			if a, err := netip.ParseAddr(e.IP); err == nil {
				if p, err := netip.ParsePrefix(n.Subnet); err == nil {
					er.IPv4Address = netip.PrefixFrom(a, p.Bits())
				}
			}
			er.MacAddress, _ = parseMAC(e.MAC)
			out.Containers[sb.ContainerID] = er
		}
	}
	return out
}

// NetworkList lists networks; filters: name, id, driver, label, type (custom|builtin).
func (d *Daemon) NetworkList(ctx context.Context, filters api.Filters) ([]network.Summary, error) {
	for k := range filters {
		switch k {
		case "name", "id", "driver", "label", "type", "scope", "dangling":
		default:
			return nil, invalid(fmt.Errorf("invalid filter %q", k))
		}
	}
	out := []network.Summary{}
	for _, n := range d.net.Networks() {
		if !matchNetwork(n, filters) {
			continue
		}
		out = append(out, network.Summary{Network: d.inspectNetwork(n).Network})
	}
	return out, nil
}

func matchNetwork(n bnet.Network, f api.Filters) bool {
	anyOf := func(vals []string, ok func(string) bool) bool {
		if len(vals) == 0 {
			return true
		}
		return slices.ContainsFunc(vals, ok)
	}
	return anyOf(f["name"], func(v string) bool { return strings.Contains(n.Name, v) }) &&
		anyOf(f["id"], func(v string) bool { return strings.HasPrefix(n.ID, v) }) &&
		anyOf(f["driver"], func(v string) bool { return n.Driver == v }) &&
		anyOf(f["scope"], func(v string) bool { return v == "local" }) &&
		anyOf(f["type"], func(v string) bool { return (v == "builtin") == n.Predefined() }) &&
		matchLabels(n.Labels, f["label"])
}

// NetworkInspect returns one network with its attached containers.
func (d *Daemon) NetworkInspect(ctx context.Context, ref string) (network.Inspect, error) {
	n, err := d.net.Network(ref)
	if err != nil {
		return network.Inspect{}, err
	}
	return d.inspectNetwork(n), nil
}

// NetworkCreate creates a bridge network.
func (d *Daemon) NetworkCreate(ctx context.Context, req network.CreateRequest) (network.CreateResponse, error) {
	cr := bnet.CreateRequest{Name: req.Name, Driver: req.Driver, Internal: req.Internal, Labels: req.Labels, Options: req.Options}
	if req.IPAM != nil {
		if len(req.IPAM.Config) > 1 {
			return network.CreateResponse{}, errdefs.ErrNotImplemented.WithMessage("more than one IPAM configuration is not supported")
		}
		for _, c := range req.IPAM.Config {
			if c.Subnet.IsValid() {
				if !c.Subnet.Addr().Is4() {
					return network.CreateResponse{}, errdefs.ErrNotImplemented.WithMessage("IPv6 networks are not supported yet")
				}
				cr.Subnet = c.Subnet.String()
			}
			if c.Gateway.IsValid() {
				cr.Gateway = c.Gateway.String()
			}
			if c.IPRange.IsValid() {
				cr.IPRange = c.IPRange.String()
			}
		}
	}
	if req.EnableIPv6 != nil && *req.EnableIPv6 {
		return network.CreateResponse{}, errdefs.ErrNotImplemented.WithMessage("IPv6 networks are not supported yet")
	}
	if !validName(req.Name) {
		return network.CreateResponse{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid network name %q", req.Name))
	}
	n, err := d.net.CreateNetwork(cr)
	if err != nil {
		return network.CreateResponse{}, err
	}
	d.events.Publish(events.NetworkEventType, events.ActionCreate, n.ID, map[string]string{"name": n.Name, "type": n.Driver})
	return network.CreateResponse{ID: n.ID}, nil
}

// NetworkRemove deletes a network without endpoints.
func (d *Daemon) NetworkRemove(ctx context.Context, ref string) error {
	n, err := d.net.Network(ref)
	if err != nil {
		return err
	}
	if err := d.net.RemoveNetwork(n.ID); err != nil {
		return err
	}
	d.events.Publish(events.NetworkEventType, events.ActionDestroy, n.ID, map[string]string{"name": n.Name, "type": n.Driver})
	return nil
}

// NetworkConnect attaches a container to a network (live when it runs).
func (d *Daemon) NetworkConnect(ctx context.Context, ref, ctrRef string, es *network.EndpointSettings) error {
	c, err := d.ctrs.get(ctrRef)
	if err != nil {
		return err
	}
	n, err := d.net.Network(ref)
	if err != nil {
		return err
	}
	cfg := bnet.EndpointConfig{}
	if es != nil {
		cfg.Aliases = slices.Clone(es.Aliases)
		if es.IPAMConfig != nil && es.IPAMConfig.IPv4Address.IsValid() {
			cfg.IPv4 = es.IPAMConfig.IPv4Address.String()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := d.net.Sandbox(c.rec.ID); !ok {
		if err := d.configureNetwork(c.rec.ID, c.rec.Name, c.rec.Config, c.rec.HostConfig, nil); err != nil {
			return err
		}
	}
	if err := d.net.Connect(c.rec.ID, n.ID, cfg); err != nil {
		return err
	}
	if sb, ok := d.net.Sandbox(c.rec.ID); ok && sb.NSPath != "" {
		if err := d.writeNetEtc(&c.rec, sb); err != nil {
			d.log.Warn("rewrite /etc/hosts", "container", c.rec.ID, "err", err)
		}
	}
	d.events.Publish(events.NetworkEventType, events.ActionConnect, n.ID, map[string]string{"name": n.Name, "type": n.Driver, "container": c.rec.ID})
	return nil
}

// NetworkDisconnect detaches a container from a network.
func (d *Daemon) NetworkDisconnect(ctx context.Context, ref, ctrRef string, force bool) error {
	c, err := d.ctrs.get(ctrRef)
	if err != nil {
		return err
	}
	n, err := d.net.Network(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := d.net.Disconnect(c.rec.ID, n.ID); err != nil {
		return err
	}
	d.events.Publish(events.NetworkEventType, events.ActionDisconnect, n.ID, map[string]string{"name": n.Name, "type": n.Driver, "container": c.rec.ID})
	return nil
}

// NetworksPrune removes user networks without endpoints.
func (d *Daemon) NetworksPrune(ctx context.Context, filters api.Filters) (network.PruneReport, error) {
	rep := network.PruneReport{NetworksDeleted: []string{}}
	until, err := untilFilter(filters)
	if err != nil {
		return rep, err
	}
	for _, n := range d.net.Networks() {
		if n.Predefined() || len(d.net.Attached(n.ID)) > 0 || !matchLabels(n.Labels, filters["label"]) {
			continue
		}
		if !until.IsZero() && n.Created.After(until) {
			continue
		}
		if err := d.NetworkRemove(ctx, n.ID); err == nil {
			rep.NetworksDeleted = append(rep.NetworksDeleted, n.Name)
		}
	}
	return rep, nil
}

var _ api.NetworkBackend = (*Daemon)(nil)
