// Package network is berth's container networking: IPAM, the Linux bridge driver (bridges,
// veth pairs, addresses and routes through netlink), NAT and port publishing in an nftables
// table of berth's own (the host's own connections to published ports, 127.0.0.1 included, are
// DNATed by the kernel), a userland proxy that holds published ports and serves containers
// reaching them through the host's address, and the embedded DNS server of user-defined networks.
//
// Threat model: a container controls its network namespace and every packet it sends. It can
// change its address, forge sources, flood DNS and open any socket inside its namespace. So
// nothing here trusts the container: isolation between networks, the absence of egress on
// --internal networks and NAT are enforced in the host namespace (nftables on the host's hooks
// keyed on the bridge a packet came in on, not on its claimed source address), the embedded DNS
// answers only from the daemon's own records for the network the listener belongs to, and
// nothing the daemon reads from a container's namespace is used as a path, a name or an address
// on the host. This package must not run container processes, touch container filesystems, or
// change host settings beyond its bridges (route_localnet included), its veths, its nftables
// table, its netns files and net.ipv4.ip_forward.
package network
