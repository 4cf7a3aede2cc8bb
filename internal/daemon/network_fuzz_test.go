package daemon

import (
	"testing"

	mcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

// FuzzPortsOf feeds API port bindings (HostPort is a free-form string from the client).
func FuzzPortsOf(f *testing.F) {
	f.Add(uint16(80), "tcp", "8080", true)
	f.Add(uint16(53), "udp", "5300-5310", false)
	f.Add(uint16(1), "sctp", "", true)
	f.Fuzz(func(t *testing.T, num uint16, proto, hostPort string, all bool) {
		p, ok := network.PortFrom(num, network.IPProtocol(proto))
		if !ok {
			return
		}
		cfg := &mcontainer.Config{ExposedPorts: network.PortSet{p: {}}}
		hc := &mcontainer.HostConfig{PortBindings: network.PortMap{p: {{HostPort: hostPort}}}, PublishAllPorts: all}
		ports, err := portsOf(cfg, hc)
		if err != nil {
			return
		}
		for _, b := range ports {
			if b.CtrPort != num || (b.HostPortEnd != 0 && b.HostPortEnd < b.HostPort) {
				t.Fatalf("%+v from %d %q", b, num, hostPort)
			}
		}
	})
}
