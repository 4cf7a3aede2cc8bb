package network

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DNSAddr is where a container on a user network finds the embedded DNS server, as Docker.
const DNSAddr = "127.0.0.11"

// resolverFunc answers a name for the container the server belongs to: the addresses, and
// whether the name is one of berth's (then no forwarding happens even with no address).
type resolverFunc func(name string) ([]netip.Addr, bool)

// dnsServer is the embedded DNS server of one container. Its sockets are created inside the
// container's network namespace, on 127.0.0.11:53, and served by the daemon; forwarded
// queries leave from the daemon, in the host's namespace, so loopback resolvers of the host
// work as in Docker.
type dnsServer struct {
	udp, tcp *dns.Server
}

func startDNS(nsPath string, resolve resolverFunc, upstream []string, log *slog.Logger) (*dnsServer, error) {
	var pc net.PacketConn
	var l net.Listener
	err := inNetns(nsPath, func() error {
		var err error
		if pc, err = net.ListenPacket("udp4", DNSAddr+":53"); err != nil {
			return err
		}
		if l, err = net.Listen("tcp4", DNSAddr+":53"); err != nil {
			_ = pc.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("embedded DNS listener: %w", err)
	}
	h := &dnsHandler{resolve: resolve, upstream: upstream, log: log, forwards: make(chan struct{}, maxForwards)}
	s := &dnsServer{
		udp: &dns.Server{PacketConn: pc, Handler: h},
		tcp: &dns.Server{Listener: l, Handler: h},
	}
	go func() { _ = s.udp.ActivateAndServe() }()
	go func() { _ = s.tcp.ActivateAndServe() }()
	return s, nil
}

func (s *dnsServer) Close() error {
	_ = s.udp.Shutdown()
	_ = s.tcp.Shutdown()
	return nil
}

// maxForwards bounds the queries one container can have in flight to the upstream resolvers:
// a container flooding its DNS server must not pile up goroutines in the daemon.
const maxForwards = 64

type dnsHandler struct {
	resolve  resolverFunc
	upstream []string
	log      *slog.Logger
	// forwards is a semaphore of maxForwards slots; nil means unbounded (tests).
	forwards chan struct{}
}

func (h *dnsHandler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	defer w.Close()
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(strings.TrimSuffix(q.Name, "."))
	if q.Qclass == dns.ClassINET && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY) {
		if addrs, ok := h.resolve(name); ok {
			m := new(dns.Msg)
			m.SetReply(req)
			m.Authoritative = true
			m.RecursionAvailable = true
			if q.Qtype != dns.TypeAAAA {
				for _, a := range addrs {
					m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 600}, A: a.AsSlice()})
				}
			}
			_ = w.WriteMsg(m)
			return
		}
	}
	h.forward(w, req)
}

// forward relays a query to the host's resolvers, trying each in turn.
func (h *dnsHandler) forward(w dns.ResponseWriter, req *dns.Msg) {
	if h.forwards != nil {
		select {
		case h.forwards <- struct{}{}:
			defer func() { <-h.forwards }()
		default:
			m := new(dns.Msg)
			m.SetRcode(req, dns.RcodeRefused)
			_ = w.WriteMsg(m)
			return
		}
	}
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	for _, up := range h.upstream {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		resp, _, err := c.ExchangeContext(ctx, req, up)
		cancel()
		if err == nil && resp != nil {
			_ = w.WriteMsg(resp)
			return
		}
		h.log.Debug("DNS forward", "upstream", up, "err", err)
	}
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeServerFailure)
	_ = w.WriteMsg(m)
}

// hostResolvers reads the host's nameservers (loopback ones included: forwarding happens in
// the host's namespace) as host:53 addresses.
func hostResolvers(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil {
				out = append(out, netip.AddrPortFrom(a, 53).String())
			}
		}
	}
	return out
}
