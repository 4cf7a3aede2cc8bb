package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// proxy forwards one published port from the host's sockets to the container. Holding the host
// port reserves it, so a second container (or another program) cannot publish the same port,
// as docker-proxy does. It carries what the kernel's DNAT leaves to it: containers reaching a
// published port through the host's address (the prerouting chain does not DNAT packets from
// berth's bridges, which keeps networks isolated), and the host's connections should the
// nftables table be missing.
type proxy struct {
	tcp    net.Listener
	udp    net.PacketConn
	target string
	log    *slog.Logger
	wg     sync.WaitGroup
	done   chan struct{}
}

// udpIdle ends a UDP flow through the proxy after this long without traffic.
const udpIdle = 60 * time.Second

// maxUDPFlows bounds the flows one UDP proxy tracks; a flood of sources cannot exhaust the daemon.
const maxUDPFlows = 1024

// startProxy binds hostIP:hostPort (port 0 picks a free one) and forwards to target.
func startProxy(proto string, hostIP netip.Addr, hostPort uint16, target netip.AddrPort, log *slog.Logger) (*proxy, uint16, error) {
	if !hostIP.IsValid() {
		hostIP = netip.IPv4Unspecified()
	}
	addr := netip.AddrPortFrom(hostIP, hostPort).String()
	p := &proxy{target: target.String(), log: log, done: make(chan struct{})}
	var port uint16
	switch proto {
	case "tcp":
		l, err := net.Listen("tcp4", addr)
		if err != nil {
			return nil, 0, fmt.Errorf("publish %s/tcp: %w", addr, err)
		}
		p.tcp = l
		port = uint16(l.Addr().(*net.TCPAddr).Port)
		p.wg.Add(1)
		go p.serveTCP()
	case "udp":
		c, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return nil, 0, fmt.Errorf("publish %s/udp: %w", addr, err)
		}
		p.udp = c
		port = uint16(c.LocalAddr().(*net.UDPAddr).Port)
		p.wg.Add(1)
		go p.serveUDP()
	default:
		return nil, 0, fmt.Errorf("unsupported protocol %q", proto)
	}
	return p, port, nil
}

func (p *proxy) Close() error {
	close(p.done)
	if p.tcp != nil {
		_ = p.tcp.Close()
	}
	if p.udp != nil {
		_ = p.udp.Close()
	}
	p.wg.Wait()
	return nil
}

func (p *proxy) serveTCP() {
	defer p.wg.Done()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := p.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			p.pipeTCP(c)
		}()
	}
}

func (p *proxy) pipeTCP(c net.Conn) {
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	b, err := (&net.Dialer{}).DialContext(ctx, "tcp4", p.target)
	cancel()
	if err != nil {
		p.log.Debug("proxy dial", "target", p.target, "err", err)
		return
	}
	defer b.Close()
	stop := make(chan struct{})
	go func() {
		select {
		case <-p.done:
			_ = c.Close()
			_ = b.Close()
		case <-stop:
		}
	}()
	defer close(stop)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(b, c)
		_ = b.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(c, b)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	wg.Wait()
}

func (p *proxy) serveUDP() {
	defer p.wg.Done()
	var mu sync.Mutex
	flows := map[string]net.Conn{}
	var fw sync.WaitGroup
	defer func() {
		mu.Lock()
		for _, f := range flows {
			_ = f.Close()
		}
		mu.Unlock()
		fw.Wait()
	}()
	buf := make([]byte, 65535)
	for {
		n, from, err := p.udp.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		key := from.String()
		mu.Lock()
		f, ok := flows[key]
		if !ok && len(flows) < maxUDPFlows {
			f, err = net.Dial("udp4", p.target)
			if err == nil {
				flows[key] = f
				fw.Add(1)
				go func() {
					defer fw.Done()
					rb := make([]byte, 65535)
					for {
						_ = f.SetReadDeadline(time.Now().Add(udpIdle))
						m, err := f.Read(rb)
						if err != nil {
							break
						}
						_, _ = p.udp.WriteTo(rb[:m], from)
					}
					mu.Lock()
					delete(flows, key)
					mu.Unlock()
					_ = f.Close()
				}()
			}
		}
		mu.Unlock()
		if f != nil {
			_, _ = f.Write(buf[:n])
		}
	}
}
