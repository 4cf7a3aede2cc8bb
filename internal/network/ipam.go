package network

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
)

// The address pools Docker uses by default: the default bridge gets 172.17.0.0/16, user
// networks the next free /16 from 172.18.0.0/16 upwards, then 192.168.0.0/16 as /20s.
var (
	defaultBridgePool = netip.MustParsePrefix("172.17.0.0/16")
	userPools         = []struct {
		base netip.Prefix
		bits int
	}{
		{netip.MustParsePrefix("172.18.0.0/15"), 16},
		{netip.MustParsePrefix("172.20.0.0/14"), 16},
		{netip.MustParsePrefix("172.24.0.0/13"), 16},
		{netip.MustParsePrefix("192.168.0.0/16"), 20},
	}
)

// ErrPoolExhausted is returned when no subnet or address is left.
var ErrPoolExhausted = errors.New("all predefined address pools have been fully subnetted")

// PickSubnet chooses a subnet for a new network that overlaps neither the subnets of existing
// networks nor the host's routes. The default bridge prefers 172.17.0.0/16.
func PickSubnet(defaultBridge bool, used []netip.Prefix) (netip.Prefix, error) {
	free := func(p netip.Prefix) bool {
		for _, u := range used {
			if u.Overlaps(p) {
				return false
			}
		}
		return true
	}
	if defaultBridge && free(defaultBridgePool) {
		return defaultBridgePool, nil
	}
	for _, pool := range userPools {
		step := uint32(1) << (32 - pool.bits)
		base := pool.base.Addr().As4()
		start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
		n := uint32(1) << (pool.bits - pool.base.Bits())
		for i := uint32(0); i < n; i++ {
			a := start + i*step
			p := netip.PrefixFrom(u32Addr(a), pool.bits)
			if free(p) {
				return p, nil
			}
		}
	}
	return netip.Prefix{}, ErrPoolExhausted
}

func u32Addr(a uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}

func addrU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// Pool is the IPv4 configuration of one network: the subnet, the gateway (the bridge's
// address) and the range addresses are allocated from.
type Pool struct {
	Subnet  netip.Prefix
	Gateway netip.Addr
	Range   netip.Prefix // equal to Subnet when no --ip-range was given
}

// NewPool validates a network's addressing. An empty gateway is the subnet's first host
// address; an empty range is the whole subnet.
func NewPool(subnet, gateway, ipRange string) (Pool, error) {
	var p Pool
	var err error
	if p.Subnet, err = netip.ParsePrefix(subnet); err != nil || !p.Subnet.Addr().Is4() {
		return p, fmt.Errorf("invalid subnet %q: an IPv4 CIDR such as 172.30.0.0/16 is required", subnet)
	}
	p.Subnet = p.Subnet.Masked()
	if p.Subnet.Bits() > 30 {
		return p, fmt.Errorf("invalid subnet %s: it must be /30 or larger", p.Subnet)
	}
	p.Range = p.Subnet
	if ipRange != "" {
		if p.Range, err = netip.ParsePrefix(ipRange); err != nil || !p.Range.Addr().Is4() {
			return p, fmt.Errorf("invalid ip-range %q", ipRange)
		}
		p.Range = p.Range.Masked()
		if p.Range.Bits() < p.Subnet.Bits() || !p.Subnet.Contains(p.Range.Addr()) {
			return p, fmt.Errorf("ip-range %s is not inside subnet %s", p.Range, p.Subnet)
		}
	}
	if gateway == "" {
		p.Gateway = p.Subnet.Addr().Next()
	} else {
		if p.Gateway, err = netip.ParseAddr(gateway); err != nil || !p.Gateway.Is4() {
			return p, fmt.Errorf("invalid gateway %q", gateway)
		}
		if !p.usable(p.Gateway, p.Subnet) {
			return p, fmt.Errorf("gateway %s is not a host address of subnet %s", p.Gateway, p.Subnet)
		}
	}
	return p, nil
}

// usable reports whether a is a host address of prefix (neither network nor broadcast).
func (p Pool) usable(a netip.Addr, in netip.Prefix) bool {
	if !in.Contains(a) || !p.Subnet.Contains(a) {
		return false
	}
	host := addrU32(a) &^ mask(p.Subnet.Bits())
	return host != 0 && host != ^mask(p.Subnet.Bits())
}

func mask(bits int) uint32 {
	if bits == 0 {
		return 0
	}
	return ^uint32(0) << (32 - bits)
}

// Allocate picks an address for a new endpoint: want if given (it must be free and in the
// subnet), else the lowest free address of the range. used holds the addresses in use.
func (p Pool) Allocate(used []netip.Addr, want netip.Addr) (netip.Addr, error) {
	taken := func(a netip.Addr) bool { return a == p.Gateway || slices.Contains(used, a) }
	if want.IsValid() {
		if !want.Is4() || !p.usable(want, p.Subnet) {
			return netip.Addr{}, fmt.Errorf("address %s does not belong to subnet %s", want, p.Subnet)
		}
		if taken(want) {
			return netip.Addr{}, fmt.Errorf("address %s is already in use", want)
		}
		return want, nil
	}
	first := addrU32(p.Range.Addr())
	size := new(big.Int).Lsh(big.NewInt(1), uint(32-p.Range.Bits())).Uint64()
	for i := uint64(0); i < size; i++ {
		a := u32Addr(first + uint32(i))
		// Like Docker, the first address of an --ip-range is not handed out either.
		if p.usable(a, p.Range) && !taken(a) && (a != p.Range.Addr() || p.Range == p.Subnet) {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no free address in %s: %w", p.Range, ErrPoolExhausted)
}

// MAC is the address Docker derives from an endpoint's IPv4 address: 02:42 and the four bytes.
func MAC(a netip.Addr) string {
	b := a.As4()
	return fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}
