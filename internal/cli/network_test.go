package cli

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/moby/moby/api/types/network"
)

func TestParsePublish(t *testing.T) {
	cases := []struct {
		spec string
		want map[string][]network.PortBinding
	}{
		{"80", map[string][]network.PortBinding{"80/tcp": {{}}}},
		{"8080:80", map[string][]network.PortBinding{"80/tcp": {{HostPort: "8080"}}}},
		{"127.0.0.1:8080:80/udp", map[string][]network.PortBinding{"80/udp": {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: "8080"}}}},
		{"127.0.0.1::80", map[string][]network.PortBinding{"80/tcp": {{HostIP: netip.MustParseAddr("127.0.0.1")}}}},
		{"8000-8001:80-81", map[string][]network.PortBinding{"80/tcp": {{HostPort: "8000"}}, "81/tcp": {{HostPort: "8001"}}}},
		{"9000-9010:80", map[string][]network.PortBinding{"80/tcp": {{HostPort: "9000-9010"}}}},
		{"[::1]:53:53/udp", map[string][]network.PortBinding{"53/udp": {{HostIP: netip.MustParseAddr("::1"), HostPort: "53"}}}},
	}
	for _, c := range cases {
		pm, ps, err := parsePublish([]string{c.spec})
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		if len(pm) != len(c.want) || len(ps) != len(c.want) {
			t.Fatalf("%s: got %v", c.spec, pm)
		}
		for p, bs := range c.want {
			if got := pm[network.MustParsePort(p)]; !slices.Equal(got, bs) {
				t.Errorf("%s: %s = %v, want %v", c.spec, p, got, bs)
			}
		}
	}
	for _, bad := range []string{"", "x", "80/icmp", "1.2.3:80:80", "8000-8002:80-81", "0", "70000", "81-80"} {
		if _, _, err := parsePublish([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestPortLines(t *testing.T) {
	pm := network.PortMap{
		network.MustParsePort("80/tcp"):  {{HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: "32768"}},
		network.MustParsePort("53/udp"):  {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: "5353"}},
		network.MustParsePort("443/tcp"): nil,
	}
	got, err := portLines(pm, nil)
	if err != nil || !slices.Equal(got, []string{"53/udp -> 127.0.0.1:5353", "80/tcp -> 0.0.0.0:32768"}) {
		t.Fatalf("all: %q %v", got, err)
	}
	if got, err := portLines(pm, []string{"80"}); err != nil || !slices.Equal(got, []string{"0.0.0.0:32768"}) {
		t.Fatalf("80: %q %v", got, err)
	}
	if _, err := portLines(pm, []string{"443"}); err == nil {
		t.Fatal("unpublished port reported")
	}
}

func FuzzParsePublish(f *testing.F) {
	for _, s := range []string{"80", "8080:80", "127.0.0.1:8080:80/udp", "[::1]::53/udp", "1-3:4-6"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pm, _, err := parsePublish([]string{s})
		if err != nil {
			return
		}
		for p := range pm {
			if p.Num() == 0 {
				t.Fatalf("%q gave port 0", s)
			}
		}
	})
}
