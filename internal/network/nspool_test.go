package network

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestNSPool(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	p := newNSPool(dir, 2)
	closed := false
	t.Cleanup(func() {
		if !closed {
			p.close()
		}
	})
	spares := func() []string {
		ents, _ := os.ReadDir(dir)
		var out []string
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "spare-") {
				out = append(out, e.Name())
			}
		}
		return out
	}
	waitSpares := func(n int) {
		t.Helper()
		for range 500 {
			p.mu.Lock()
			ok := len(p.free) == n && !p.filling
			p.mu.Unlock()
			if ok {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("pool did not reach %d spares: %v", n, spares())
	}
	for i, name := range []string{"a", "b", "c"} {
		path := filepath.Join(dir, name)
		if err := p.take(path); err != nil {
			t.Fatalf("take %d: %v", i, err)
		}
		t.Cleanup(func() { _ = removeNetns(path) })
		h, err := netns.GetFromPath(path)
		if err != nil {
			t.Fatalf("%s is no network namespace: %v", name, err)
		}
		nl, err := netlink.NewHandleAt(h)
		if err != nil {
			t.Fatal(err)
		}
		lo, err := nl.LinkByName("lo")
		if err != nil || lo.Attrs().Flags&1 == 0 { // net.FlagUp
			t.Errorf("%s: loopback not up: %v", name, err)
		}
		links, _ := nl.LinkList()
		if len(links) != 1 {
			t.Errorf("%s: links %d, want only lo", name, len(links))
		}
		nl.Close()
		h.Close()
		waitSpares(2)
		if got := spares(); len(got) != 2 {
			t.Fatalf("spares on disk %v", got)
		}
	}
	// Two containers never share a namespace.
	a, _ := netns.GetFromPath(filepath.Join(dir, "a"))
	b, _ := netns.GetFromPath(filepath.Join(dir, "b"))
	defer a.Close()
	defer b.Close()
	if a.Equal(b) {
		t.Error("two takes gave the same namespace")
	}
	p.close()
	closed = true
	if got := spares(); len(got) != 0 {
		t.Errorf("spares left after close: %v", got)
	}
}
