package network

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// ruleNet is what the nftables rules need of one network.
type ruleNet struct {
	Bridge   string
	Subnet   netip.Prefix
	Internal bool
}

// rulePort is one published port: host traffic to HostIP:HostPort goes to CtrIP:CtrPort.
type rulePort struct {
	Proto    string // tcp or udp
	HostIP   netip.Addr
	HostPort uint16
	CtrIP    netip.Addr
	CtrPort  uint16
}

// syncRules replaces berth's table with one built from nets and ports, in one netlink batch:
// the kernel applies it atomically, so packets never see a half-built table.
//
// The table holds:
//   - guard (filter, prerouting at raw priority, before conntrack): packets that come in on a
//     berth bridge with a loopback source or destination are dropped. The bridges have
//     route_localnet on (so DNATed loopback connections can leave through them), and without
//     this a container could address the host's 127.0.0.0/8 services;
//   - prerouting (dstnat): packets that come in on a berth bridge are left alone (a container
//     reaching a published port through the host's address goes through the userland proxy,
//     which keeps inter-network isolation intact); other packets to a local address and a
//     published port are DNATed to the container;
//   - output (dstnat): the host's own connections to a published port, 127.0.0.0/8 included,
//     get the same DNAT, so the kernel rather than the proxy carries them;
//   - forward (filter): packets between two different berth networks are dropped, and packets
//     into or out of an internal network other than within its own bridge are dropped;
//   - postrouting (srcnat): traffic from a non-internal network leaving through another
//     interface is masqueraded, and so are DNATed host connections from a loopback source
//     leaving through a bridge (the container could not answer 127.0.0.1).
func syncRules(table string, nets []ruleNet, ports []rulePort) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	// Add (a no-op if it exists), delete and re-add: one batch that works with or without an
	// existing table.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	guard := c.AddChain(&nftables.Chain{Name: "guard", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw, Policy: &accept})
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	out := c.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})

	lo := netip.MustParsePrefix("127.0.0.0/8")
	for _, n := range nets {
		for _, off := range []uint32{12, 16} {
			c.AddRule(&nftables.Rule{Table: t, Chain: guard, Exprs: append(append(ifname(expr.MetaKeyIIFNAME, n.Bridge, true), addrMatch(off, lo)...), &expr.Verdict{Kind: expr.VerdictDrop})})
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: append(ifname(expr.MetaKeyIIFNAME, n.Bridge, true), &expr.Verdict{Kind: expr.VerdictReturn})})
	}
	for _, p := range ports {
		proto := byte(unix.IPPROTO_TCP)
		if p.Proto == "udp" {
			proto = unix.IPPROTO_UDP
		}
		var dst []expr.Any
		if p.HostIP.IsValid() && !p.HostIP.IsUnspecified() {
			dst = addrMatch(16, netip.PrefixFrom(p.HostIP, 32))
		} else {
			dst = []expr.Any{
				&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)}}
		}
		ex := append(dst,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, p.HostPort)},
			&expr.Immediate{Register: 1, Data: p.CtrIP.AsSlice()},
			&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, p.CtrPort)},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
		)
		// The host's own connections, to any of its addresses (127.0.0.0/8 included), take the
		// kernel path; the userland proxy still holds the port and serves containers.
		c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: ex})
		if !p.HostIP.IsLoopback() {
			// A loopback address is not reachable from outside; only the output hook needs it.
			c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: ex})
		}
	}
	for _, a := range nets {
		// The host's DNATed connections from 127.0.0.1: the container must see (and answer) an
		// address it can route, the bridge's.
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: append(append(addrMatch(12, lo), ifname(expr.MetaKeyOIFNAME, a.Bridge, true)...), &expr.Masq{})})
		if a.Internal {
			// In on the bridge and out elsewhere, or in elsewhere and out on the bridge.
			c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: append(append(ifname(expr.MetaKeyIIFNAME, a.Bridge, true), ifname(expr.MetaKeyOIFNAME, a.Bridge, false)...), &expr.Verdict{Kind: expr.VerdictDrop})})
			c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: append(append(ifname(expr.MetaKeyOIFNAME, a.Bridge, true), ifname(expr.MetaKeyIIFNAME, a.Bridge, false)...), &expr.Verdict{Kind: expr.VerdictDrop})})
			continue
		}
		for _, b := range nets {
			if a.Bridge == b.Bridge {
				continue
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: append(append(ifname(expr.MetaKeyIIFNAME, a.Bridge, true), ifname(expr.MetaKeyOIFNAME, b.Bridge, true)...), &expr.Verdict{Kind: expr.VerdictDrop})})
		}
		ex := append(addrMatch(12, a.Subnet), ifname(expr.MetaKeyOIFNAME, a.Bridge, false)...)
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: append(ex, &expr.Masq{})})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("apply nftables table %s: %w", table, err)
	}
	return nil
}

// deleteRules removes berth's table; a missing table is not an error.
func deleteRules(table string) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	c.AddTable(t)
	c.DelTable(t)
	return c.Flush()
}

// ifname matches (eq) or excludes (!eq) an interface name.
func ifname(key expr.MetaKey, name string, eq bool) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	op := expr.CmpOpEq
	if !eq {
		op = expr.CmpOpNeq
	}
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: b}}
}

// addrMatch matches the IPv4 source (offset 12) or destination (16) against a prefix.
func addrMatch(offset uint32, p netip.Prefix) []expr.Any {
	m := binary.BigEndian.AppendUint32(nil, mask(p.Bits()))
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: m, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}
