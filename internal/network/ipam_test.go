package network

import (
	"net/netip"
	"testing"
)

func TestPickSubnet(t *testing.T) {
	p := netip.MustParsePrefix
	cases := []struct {
		name    string
		deflt   bool
		used    []netip.Prefix
		want    string
		wantErr bool
	}{
		{"default bridge", true, nil, "172.17.0.0/16", false},
		{"default taken by a route", true, []netip.Prefix{p("172.17.5.0/24")}, "172.18.0.0/16", false},
		{"user network", false, nil, "172.18.0.0/16", false},
		{"skips used", false, []netip.Prefix{p("172.18.0.0/16"), p("172.19.0.0/16")}, "172.20.0.0/16", false},
		{"host route overlap", false, []netip.Prefix{p("172.16.0.0/12")}, "192.168.0.0/20", false},
		{"everything", false, []netip.Prefix{p("0.0.0.0/0")}, "", true},
	}
	for _, c := range cases {
		got, err := PickSubnet(c.deflt, c.used)
		if (err != nil) != c.wantErr {
			t.Fatalf("%s: err = %v", c.name, err)
		}
		if err == nil && got.String() != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}
}

func TestPoolAllocate(t *testing.T) {
	pool, err := NewPool("10.5.0.0/29", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if pool.Gateway.String() != "10.5.0.1" {
		t.Fatalf("gateway %s", pool.Gateway)
	}
	var used []netip.Addr
	for _, want := range []string{"10.5.0.2", "10.5.0.3", "10.5.0.4", "10.5.0.5", "10.5.0.6"} {
		a, err := pool.Allocate(used, netip.Addr{})
		if err != nil || a.String() != want {
			t.Fatalf("allocate: %v %v, want %s", a, err, want)
		}
		used = append(used, a)
	}
	if _, err := pool.Allocate(used, netip.Addr{}); err == nil {
		t.Fatal("allocated past the broadcast address")
	}
	// Release one, and it comes back.
	used = used[1:]
	if a, err := pool.Allocate(used, netip.Addr{}); err != nil || a.String() != "10.5.0.2" {
		t.Fatalf("after release: %v %v", a, err)
	}
	if _, err := pool.Allocate(used, netip.MustParseAddr("10.5.0.3")); err == nil {
		t.Fatal("allocated an address in use")
	}
	for _, bad := range []string{"10.5.0.1", "10.5.0.0", "10.5.0.7", "10.6.0.2"} {
		if _, err := pool.Allocate(nil, netip.MustParseAddr(bad)); err == nil {
			t.Errorf("allocated %s", bad)
		}
	}
}

func TestNewPool(t *testing.T) {
	p, err := NewPool("10.9.0.0/16", "10.9.0.254", "10.9.8.0/24")
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.Allocate(nil, netip.Addr{})
	if err != nil || a.String() != "10.9.8.1" {
		t.Fatalf("range allocation: %v %v", a, err)
	}
	for _, c := range [][3]string{{"bogus", "", ""}, {"10.0.0.0/31", "", ""}, {"10.0.0.0/24", "10.0.1.1", ""}, {"10.0.0.0/24", "", "10.1.0.0/24"}, {"10.0.0.0/24", "10.0.0.255", ""}, {"fd00::/64", "", ""}} {
		if _, err := NewPool(c[0], c[1], c[2]); err == nil {
			t.Errorf("NewPool%v: no error", c)
		}
	}
	if MAC(netip.MustParseAddr("172.17.0.2")) != "02:42:ac:11:00:02" {
		t.Error("MAC")
	}
}

func FuzzNewPool(f *testing.F) {
	f.Add("172.18.0.0/16", "172.18.0.1", "172.18.5.0/24")
	f.Add("10.0.0.0/30", "", "")
	f.Fuzz(func(t *testing.T, subnet, gw, rng string) {
		p, err := NewPool(subnet, gw, rng)
		if err != nil {
			return
		}
		if a, err := p.Allocate(nil, netip.Addr{}); err == nil && !p.Subnet.Contains(a) {
			t.Fatalf("%s outside %s", a, p.Subnet)
		}
	})
}
