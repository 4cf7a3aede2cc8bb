package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// rootLock is an exclusive flock on <root>/berth.lock, held for the daemon's whole life. The
// kernel drops it when the process dies, so a killed daemon never leaves a stale lock.
type rootLock struct{ f *os.File }

func lockRoot(root string) (*rootLock, error) {
	p := filepath.Join(root, "berth.lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(p)
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := strings.TrimSpace(string(pid))
			if holder == "" {
				holder = "unknown"
			}
			return nil, fmt.Errorf("another berth daemon (pid %s) is already using data root %s: stop it, or start this one with a different --root", holder, root)
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &rootLock{f: f}, nil
}

func (l *rootLock) release() {
	_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	_ = l.f.Close()
}
