package network

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// nsPool keeps network namespaces made ahead of need. Making one (unshare, a bind mount,
// loopback up) costs a container start 1-3 ms, much of it waiting on the kernel's pernet lock
// while the namespaces of exited containers are torn down. A start takes a spare by binding it
// at the container's path; the pool refills in the background. Spares live in the netns
// directory as "spare-*" files (never a container's name: those are 16 hex digits), so a
// daemon that died leaves them to the next one's reconcile, which removes unknown files.
type nsPool struct {
	dir     string
	size    int
	mu      sync.Mutex
	free    []string
	filling bool
	closed  bool
	wg      sync.WaitGroup
}

func newNSPool(dir string, size int) *nsPool { return &nsPool{dir: dir, size: size} }

// take puts a network namespace at path: a spare if there is one, else a new one.
func (p *nsPool) take(path string) error {
	p.mu.Lock()
	var spare string
	if n := len(p.free); n > 0 {
		spare, p.free = p.free[n-1], p.free[:n-1]
	}
	p.mu.Unlock()
	p.refill()
	if spare != "" {
		err := adoptNetns(spare, path)
		_ = removeNetns(spare)
		if err == nil {
			return nil
		}
		_ = removeNetns(path)
	}
	return createNetns(path)
}

// adoptNetns binds the namespace at spare to path (a file it creates).
func adoptNetns(spare, path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o400)
	if err != nil {
		return fmt.Errorf("create netns file: %w", err)
	}
	_ = f.Close()
	if err := unix.Mount(spare, path, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind netns: %w", err)
	}
	return nil
}

// refill starts filling the pool up to its size unless that is under way.
func (p *nsPool) refill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.filling || p.closed || len(p.free) >= p.size {
		return
	}
	p.filling = true
	p.wg.Add(1)
	go p.fill()
}

func (p *nsPool) fill() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		if p.closed || len(p.free) >= p.size {
			p.filling = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		path := filepath.Join(p.dir, "spare-"+hex.EncodeToString(b))
		if err := createNetns(path); err != nil {
			p.mu.Lock()
			p.filling = false
			p.mu.Unlock()
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = removeNetns(path)
			continue
		}
		p.free = append(p.free, path)
		p.mu.Unlock()
	}
}

// has reports whether path is one of the pool's spares.
func (p *nsPool) has(path string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Contains(p.free, path)
}

// close removes the spares and stops filling.
func (p *nsPool) close() {
	p.mu.Lock()
	p.closed = true
	free := p.free
	p.free = nil
	p.mu.Unlock()
	p.wg.Wait()
	for _, s := range free {
		_ = removeNetns(s)
	}
}
