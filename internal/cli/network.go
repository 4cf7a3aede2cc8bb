package cli

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// newNetworkCommand is `berth network ...`.
func (c *cli) newNetworkCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "network", Short: "Manage networks", Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() }}
	cmd.AddCommand(c.newNetworkCreateCommand(), c.newNetworkLsCommand(), c.newNetworkInspectCommand(),
		c.newNetworkRmCommand(), c.newNetworkConnectCommand(), c.newNetworkDisconnectCommand(),
		c.newNetworkPruneCommand())
	return cmd
}

func (c *cli) newNetworkCreateCommand() *cobra.Command {
	var (
		driver, subnet, gateway, ipRange string
		internal                         bool
		labels, opts                     []string
	)
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] NETWORK",
		Short: "Create a network",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lm, om := kvMap(labels), kvMap(opts)
			o := client.NetworkCreateOptions{Driver: driver, Internal: internal, Labels: lm, Options: om}
			if subnet != "" || gateway != "" || ipRange != "" {
				var ic network.IPAMConfig
				var err error
				if subnet != "" {
					if ic.Subnet, err = netip.ParsePrefix(subnet); err != nil {
						return fmt.Errorf("invalid --subnet %q: %w", subnet, err)
					}
				}
				if gateway != "" {
					if ic.Gateway, err = netip.ParseAddr(gateway); err != nil {
						return fmt.Errorf("invalid --gateway %q: %w", gateway, err)
					}
				}
				if ipRange != "" {
					if ic.IPRange, err = netip.ParsePrefix(ipRange); err != nil {
						return fmt.Errorf("invalid --ip-range %q: %w", ipRange, err)
					}
				}
				o.IPAM = &network.IPAM{Driver: "default", Config: []network.IPAMConfig{ic}}
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.NetworkCreate(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.out, res.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&driver, "driver", "d", "bridge", "Driver to manage the Network")
	f.StringVar(&subnet, "subnet", "", "Subnet in CIDR format that represents a network segment")
	f.StringVar(&gateway, "gateway", "", "IPv4 Gateway for the master subnet")
	f.StringVar(&ipRange, "ip-range", "", "Allocate container ip from a sub-range")
	f.BoolVar(&internal, "internal", false, "Restrict external access to the network")
	listVarP(f, &labels, "label", "", nil, "Set metadata on a network")
	listVarP(f, &opts, "opt", "o", nil, "Set driver specific options")
	return cmd
}

func kvMap(vals []string) map[string]string {
	m := map[string]string{}
	for _, kv := range vals {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func (c *cli) newNetworkLsCommand() *cobra.Command {
	var (
		quiet, noTrunc bool
		filters        []string
		format         string
	)
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List networks",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pf, err := parseFilterFlags(filters)
			if err != nil {
				return err
			}
			f := client.Filters(pf)
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.NetworkList(cmd.Context(), client.NetworkListOptions{Filters: f})
			if err != nil {
				return err
			}
			nets := res.Items
			sort.Slice(nets, func(i, j int) bool { return nets[i].Name < nets[j].Name })
			if format != "" && format != "table" {
				for _, n := range nets {
					if err := c.execTemplate(format, n); err != nil {
						return err
					}
				}
				return nil
			}
			id := func(s string) string {
				if noTrunc || len(s) < 12 {
					return s
				}
				return s[:12]
			}
			if quiet {
				for _, n := range nets {
					fmt.Fprintln(c.out, id(n.ID))
				}
				return nil
			}
			tw := tabwriter.NewWriter(c.out, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NETWORK ID\tNAME\tDRIVER\tSCOPE")
			for _, n := range nets {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", id(n.ID), n.Name, n.Driver, n.Scope)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&quiet, "quiet", "q", false, "Only display network IDs")
	f.BoolVar(&noTrunc, "no-trunc", false, "Do not truncate the output")
	listVarP(f, &filters, "filter", "f", nil, "Provide filter values (e.g. \"driver=bridge\")")
	f.StringVar(&format, "format", "", "Format output using a custom template")
	return cmd
}

func (c *cli) newNetworkInspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] NETWORK [NETWORK...]",
		Short: "Display detailed information on one or more networks",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			var objs []any
			var firstErr error
			for _, a := range args {
				res, err := cl.NetworkInspect(cmd.Context(), a, client.NetworkInspectOptions{})
				if err != nil {
					fmt.Fprintln(c.err, "Error response from daemon:", err)
					if firstErr == nil {
						firstErr = statusError{status: exitError}
					}
					continue
				}
				objs = append(objs, res.Network)
			}
			if err := c.printObjects(objs, format); err != nil {
				return err
			}
			return firstErr
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	return cmd
}

func (c *cli) newNetworkRmCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "rm NETWORK [NETWORK...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more networks",
		Args:    requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return c.forEach(args, func(n string) error {
				_, err := cl.NetworkRemove(cmd.Context(), n, client.NetworkRemoveOptions{})
				return err
			})
		},
	}
	return cmd
}

func (c *cli) newNetworkConnectCommand() *cobra.Command {
	var (
		ip      string
		aliases []string
	)
	cmd := &cobra.Command{
		Use:   "connect [OPTIONS] NETWORK CONTAINER",
		Short: "Connect a container to a network",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			es := &network.EndpointSettings{Aliases: aliases}
			if ip != "" {
				a, err := netip.ParseAddr(ip)
				if err != nil {
					return fmt.Errorf("invalid --ip %q: %w", ip, err)
				}
				es.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: a}
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			_, err = cl.NetworkConnect(cmd.Context(), args[0], client.NetworkConnectOptions{Container: args[1], EndpointConfig: es})
			return err
		},
	}
	cmd.Flags().StringVar(&ip, "ip", "", "IPv4 address (e.g., \"172.30.100.104\")")
	listVarP(cmd.Flags(), &aliases, "alias", "", nil, "Add network-scoped alias for the container")
	return cmd
}

func (c *cli) newNetworkDisconnectCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "disconnect [OPTIONS] NETWORK CONTAINER",
		Short: "Disconnect a container from a network",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			_, err = cl.NetworkDisconnect(cmd.Context(), args[0], client.NetworkDisconnectOptions{Container: args[1], Force: force})
			return err
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force the container to disconnect from a network")
	return cmd
}

func (c *cli) newNetworkPruneCommand() *cobra.Command {
	var (
		force   bool
		filters []string
	)
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all unused networks",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !force {
				if !c.confirm("WARNING! This will remove all custom networks not used by at least one container.") {
					return nil
				}
			}
			pf, err := parseFilterFlags(filters)
			if err != nil {
				return err
			}
			f := client.Filters(pf)
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.NetworkPrune(cmd.Context(), client.NetworkPruneOptions{Filters: f})
			if err != nil {
				return err
			}
			if len(res.Report.NetworksDeleted) > 0 {
				fmt.Fprintln(c.out, "Deleted Networks:")
				for _, n := range res.Report.NetworksDeleted {
					fmt.Fprintln(c.out, n)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	listVarP(cmd.Flags(), &filters, "filter", "", nil, "Provide filter values (e.g. \"until=<timestamp>\")")
	return cmd
}

// newPortCommand is `berth port CONTAINER [PRIVATE_PORT[/PROTO]]`.
func (c *cli) newPortCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "port CONTAINER [PRIVATE_PORT[/PROTO]]",
		Short: "List port mappings or a specific mapping for the container",
		Args:  requiresRangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.ContainerInspect(cmd.Context(), args[0], client.ContainerInspectOptions{})
			if err != nil {
				return err
			}
			var ports network.PortMap
			if ns := res.Container.NetworkSettings; ns != nil {
				ports = ns.Ports
			}
			lines, err := portLines(ports, args[1:])
			if err != nil {
				return err
			}
			for _, l := range lines {
				fmt.Fprintln(c.out, l)
			}
			return nil
		},
	}
}

// portLines formats `docker port` output; want optionally selects one private port.
func portLines(ports network.PortMap, want []string) ([]string, error) {
	keys := make([]network.Port, 0, len(ports))
	for p := range ports {
		keys = append(keys, p)
	}
	slices.SortFunc(keys, func(a, b network.Port) int {
		if a.Num() != b.Num() {
			return int(a.Num()) - int(b.Num())
		}
		return strings.Compare(string(a.Proto()), string(b.Proto()))
	})
	var out []string
	if len(want) == 1 {
		s := want[0]
		if !strings.Contains(s, "/") {
			s += "/tcp"
		}
		p, err := network.ParsePort(s)
		if err != nil {
			return nil, fmt.Errorf("invalid port %q: %w", want[0], err)
		}
		bs, ok := ports[p]
		if !ok || len(bs) == 0 {
			return nil, fmt.Errorf("no public port '%s' published for the container", p)
		}
		for _, b := range bs {
			out = append(out, netip.AddrPortFrom(b.HostIP, mustPort(b.HostPort)).String())
		}
		return out, nil
	}
	for _, p := range keys {
		for _, b := range ports[p] {
			out = append(out, fmt.Sprintf("%s -> %s", p, netip.AddrPortFrom(b.HostIP, mustPort(b.HostPort))))
		}
	}
	return out, nil
}

func mustPort(s string) uint16 {
	n, _ := strconv.ParseUint(s, 10, 16)
	return uint16(n)
}

// parsePublish parses -p values, [ip:][hostPort[-end]:]containerPort[-end][/proto], into
// port bindings (and the exposed ports they imply).
func parsePublish(specs []string) (network.PortMap, network.PortSet, error) {
	pm, ps := network.PortMap{}, network.PortSet{}
	for _, spec := range specs {
		proto := "tcp"
		rest := spec
		if i := strings.LastIndex(rest, "/"); i >= 0 {
			proto, rest = strings.ToLower(rest[i+1:]), rest[:i]
		}
		if proto != "tcp" && proto != "udp" && proto != "sctp" {
			return nil, nil, fmt.Errorf("invalid proto in -p %q: %s", spec, proto)
		}
		var ip, host, ctr string
		i := strings.LastIndex(rest, ":")
		if i < 0 {
			ctr = rest
		} else {
			ctr, rest = rest[i+1:], rest[:i]
			if j := strings.LastIndex(rest, ":"); j >= 0 {
				ip, host = rest[:j], rest[j+1:]
			} else {
				host = rest
			}
		}
		ip = strings.TrimSuffix(strings.TrimPrefix(ip, "["), "]")
		var hostIP netip.Addr
		if ip != "" {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				return nil, nil, fmt.Errorf("invalid IP address in -p %q: %s", spec, ip)
			}
			hostIP = a
		}
		clo, chi, err := parseRange(ctr)
		if err != nil || clo == 0 {
			return nil, nil, fmt.Errorf("invalid containerPort in -p %q", spec)
		}
		var hlo, hhi uint16
		if host != "" {
			if hlo, hhi, err = parseRange(host); err != nil {
				return nil, nil, fmt.Errorf("invalid hostPort in -p %q", spec)
			}
		}
		n := int(chi - clo)
		if host != "" && hhi-hlo != chi-clo && clo != chi {
			return nil, nil, fmt.Errorf("invalid ranges in -p %q: host and container port ranges differ in size", spec)
		}
		for k := 0; k <= n; k++ {
			p, ok := network.PortFrom(clo+uint16(k), network.IPProtocol(proto))
			if !ok {
				return nil, nil, fmt.Errorf("invalid port in -p %q", spec)
			}
			b := network.PortBinding{HostIP: hostIP}
			switch {
			case host == "":
			case clo == chi && hlo != hhi:
				b.HostPort = fmt.Sprintf("%d-%d", hlo, hhi)
			default:
				b.HostPort = strconv.Itoa(int(hlo) + k)
			}
			pm[p] = append(pm[p], b)
			ps[p] = struct{}{}
		}
	}
	return pm, ps, nil
}

func parseRange(s string) (uint16, uint16, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	l, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return 0, 0, err
	}
	h := l
	if isRange {
		if h, err = strconv.ParseUint(hi, 10, 16); err != nil {
			return 0, 0, err
		}
		if h < l {
			return 0, 0, fmt.Errorf("invalid range %s", s)
		}
	}
	return uint16(l), uint16(h), nil
}

// networkingConfig turns --network, --ip and --network-alias into the create request's
// endpoints.
func (o *containerOpts) networkingConfig(hc *container.HostConfig) (*network.NetworkingConfig, error) {
	nc := &network.NetworkingConfig{}
	if o.ip == "" && len(o.aliases) == 0 {
		return nc, nil
	}
	name := string(hc.NetworkMode)
	if name == "" || name == "default" || name == "bridge" || name == "host" || name == "none" || strings.HasPrefix(name, "container:") {
		if o.ip != "" {
			return nil, fmt.Errorf("--ip needs a user-defined network (--network NAME)")
		}
		return nil, fmt.Errorf("--network-alias needs a user-defined network (--network NAME)")
	}
	es := &network.EndpointSettings{Aliases: o.aliases}
	if o.ip != "" {
		a, err := netip.ParseAddr(o.ip)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("invalid --ip %q: an IPv4 address is required", o.ip)
		}
		es.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: a}
	}
	nc.EndpointsConfig = map[string]*network.EndpointSettings{name: es}
	return nc, nil
}
