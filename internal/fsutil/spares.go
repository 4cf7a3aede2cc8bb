package fsutil

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// Spares is a bounded pool of emptied directories kept for reuse (spare-<n> in their parent),
// handed out oldest first. It is known only in memory: whoever owns the parent deletes the
// spares a previous process left.
type Spares struct {
	// Max bounds the pool.
	Max int

	mu   sync.Mutex
	dirs []string
	seq  uint64
}

// Take returns a spare directory, or "" when there is none.
func (p *Spares) Take() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.dirs) == 0 {
		return ""
	}
	d := p.dirs[0]
	p.dirs = p.dirs[1:]
	return d
}

// Keep empties dir with empty and keeps it, renamed to spare-<n> in parent. It reports false,
// and the caller deletes dir, when the pool is full or dir could not be emptied or renamed.
func (p *Spares) Keep(dir, parent string, empty func(string) error) bool {
	p.mu.Lock()
	full := len(p.dirs) >= p.Max
	p.seq++
	spare := filepath.Join(parent, "spare-"+strconv.FormatUint(p.seq, 10))
	p.mu.Unlock()
	if full || empty(dir) != nil || os.Rename(dir, spare) != nil {
		return false
	}
	p.mu.Lock()
	p.dirs = append(p.dirs, spare)
	p.mu.Unlock()
	return true
}

// Names returns the base names of the spares.
func (p *Spares) Names() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	names := make([]string, len(p.dirs))
	for i, d := range p.dirs {
		names[i] = filepath.Base(d)
	}
	return names
}

// Len returns how many spares the pool holds.
func (p *Spares) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.dirs)
}
