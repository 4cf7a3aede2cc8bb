package network

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// serve runs h on a fresh UDP socket on 127.0.0.1 and returns its address.
func serve(t *testing.T, h dns.Handler) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	s := &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { close(started) }}
	go func() { _ = s.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = s.Shutdown() })
	return pc.LocalAddr().String()
}

func TestEmbeddedDNS(t *testing.T) {
	upstream := serve(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: net.IPv4(192, 0, 2, 7)})
		_ = w.WriteMsg(m)
	}))
	resolve := func(name string) ([]netip.Addr, bool) {
		if name == "web" {
			return []netip.Addr{netip.MustParseAddr("172.18.0.5")}, true
		}
		return nil, false
	}
	addr := serve(t, &dnsHandler{resolve: resolve, upstream: []string{upstream}, log: slog.New(slog.DiscardHandler)})
	ask := func(name string, qt uint16) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qt)
		r, _, err := (&dns.Client{}).Exchange(m, addr)
		if err != nil {
			t.Fatalf("query %s: %v", name, err)
		}
		return r
	}
	if r := ask("WEB", dns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "172.18.0.5" || !r.Authoritative {
		t.Fatalf("container name: %v", r)
	}
	if r := ask("web", dns.TypeAAAA); len(r.Answer) != 0 || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("AAAA of a container name: %v", r)
	}
	if r := ask("example.com", dns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.7" {
		t.Fatalf("forwarded: %v", r)
	}
	if got := hostResolvers("testdata/resolv.conf"); len(got) != 2 || got[0] != "127.0.0.53:53" || got[1] != "[fd00::1]:53" {
		t.Fatalf("hostResolvers: %v", got)
	}
}
