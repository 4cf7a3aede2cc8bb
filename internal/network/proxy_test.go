package network

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestProxyTCPAndUDP(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	lo := netip.MustParseAddr("127.0.0.1")
	// TCP echo backend.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	px, port, err := startProxy("tcp", lo, 0, netip.MustParseAddrPort(l.Addr().String()), log)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	if port == 0 {
		t.Fatal("no port picked")
	}
	if _, _, err := startProxy("tcp", lo, port, netip.MustParseAddrPort(l.Addr().String()), log); err == nil {
		t.Fatal("second proxy on the same port")
	}
	c, err := net.Dial("tcp4", netip.AddrPortFrom(lo, port).String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("over tcp"))
	_ = c.(*net.TCPConn).CloseWrite()
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "over tcp" {
		t.Fatalf("tcp echo: %q", b)
	}

	// UDP echo backend.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	ux, uport, err := startProxy("udp", lo, 0, netip.MustParseAddrPort(pc.LocalAddr().String()), log)
	if err != nil {
		t.Fatal(err)
	}
	defer ux.Close()
	uc, err := net.Dial("udp4", netip.AddrPortFrom(lo, uport).String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	_, _ = uc.Write([]byte("over udp"))
	_ = uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := uc.Read(buf)
	if err != nil || string(buf[:n]) != "over udp" {
		t.Fatalf("udp echo: %q %v", buf[:n], err)
	}
}
