package daemon

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Container directories are recycled: a removed container's directory (its rootfs mount
// point, its /etc files and its log) is emptied after the removal's reply and kept as
// containers/spare-<n>; the next create renames it into place and rewrites the files in place.
// Every inode made and deleted costs a container run on some filesystems (ext4 without a
// journal scans each inode freed in the last 30 s at every allocation; see docs/benchmarks.md),
// and a run made six here. The snapshotter recycles the writable layer's directories the same
// way (overlay.Snapshotter). Spares are known only in memory: cleanStaleDirs deletes those a
// previous daemon left.

// maxSpareDirs bounds the emptied container directories kept.
const maxSpareDirs = 64

// spareLog is the name of a spare's emptied log file, renamed to the new container's.
const spareLog = "json.log"

type spareCtrDirs struct {
	mu   sync.Mutex
	dirs []string
	seq  uint64
}

// etcFiles are the generated files a container directory holds.
func etcFiles() []string { return []string{"hostname", "hosts", "resolv.conf"} }

// makeCtrDir makes the directory of new container id, from a spare when there is one.
func (d *Daemon) makeCtrDir(id string) error {
	dir := d.ctrDir(id)
	if spare := d.spareDirs.take(); spare != "" {
		if err := os.Rename(spare, dir); err == nil {
			if err := os.Rename(filepath.Join(dir, spareLog), d.logPath(id)); err != nil {
				_ = os.Remove(filepath.Join(dir, spareLog))
			}
			return nil
		}
		_ = os.RemoveAll(spare)
	}
	return os.MkdirAll(filepath.Join(dir, "rootfs"), 0o700)
}

// recycleCtrDir empties the directory of removed container id (at dir, renamed aside and no
// longer mounted on) and keeps it as a spare. It reports false when the caller must delete
// it: the pool is full, or dir holds something it cannot vouch for.
func (d *Daemon) recycleCtrDir(dir, id string) bool {
	p := &d.spareDirs
	p.mu.Lock()
	full := len(p.dirs) >= maxSpareDirs
	p.seq++
	spare := filepath.Join(d.cfg.Root, "containers", "spare-"+strconv.FormatUint(p.seq, 10))
	p.mu.Unlock()
	if full || emptyCtrDir(dir, id) != nil || os.Rename(dir, spare) != nil {
		return false
	}
	p.mu.Lock()
	p.dirs = append(p.dirs, spare)
	p.mu.Unlock()
	return true
}

// emptyCtrDir leaves dir with an empty rootfs directory and empty etc files and log. The
// files are emptied durably: after a host crash a reused file must not show the previous
// container's content (a start regenerates empty etc files, see etcFilesLost).
func emptyCtrDir(dir, id string) error {
	names, err := readDirNames(dir)
	if err != nil {
		return err
	}
	keep := map[string]bool{"rootfs": true, spareLog: true}
	for _, n := range etcFiles() {
		keep[n] = true
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if n == id+"-json.log" {
			if err := os.Rename(p, filepath.Join(dir, spareLog)); err != nil {
				return err
			}
			continue
		}
		if !keep[n] {
			if err := os.RemoveAll(p); err != nil {
				return err
			}
		}
	}
	// rootfs must be an empty directory and no mount point: os.Remove would refuse a mount point
	// too, but never delete through one.
	if rest, err := readDirNames(filepath.Join(dir, "rootfs")); err != nil || len(rest) > 0 {
		return os.ErrExist
	}
	for _, n := range append(etcFiles(), spareLog) {
		if err := truncateSync(filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	return nil
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// truncateSync empties the regular file at path (made if missing) and syncs it.
func truncateSync(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (p *spareCtrDirs) take() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.dirs)
	if n == 0 {
		return ""
	}
	s := p.dirs[n-1]
	p.dirs = p.dirs[:n-1]
	return s
}
