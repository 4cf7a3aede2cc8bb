package daemon

import (
	"os"
	"path/filepath"

	"github.com/berth-dev/berth/internal/fsutil"
	"golang.org/x/sys/unix"
)

// Container directories are recycled: a removed container's directory (its rootfs mount
// point and its /etc files) is emptied after the removal's reply and kept as
// containers/spare-<n>; the next create renames it into place and rewrites the files in place.
// Every inode made and deleted costs a container run on some filesystems (ext4 without a
// journal scans each inode freed in the last 30 s at every allocation; see docs/benchmarks.md).
// The snapshotter recycles the writable layer's directories the same way
// (overlay.Removal.Recycle). Spares are known only in memory: cleanStaleDirs deletes those a
// previous daemon left. The log is not reused: a `logs` reader of the removed container may
// still hold it open.

// maxSpareDirs bounds the emptied container directories kept.
const maxSpareDirs = 64

// etcFiles are the generated files a container directory holds.
func etcFiles() []string { return []string{"hostname", "hosts", "resolv.conf"} }

// makeCtrDir makes the directory of new container id, from a spare when there is one.
func (d *Daemon) makeCtrDir(id string) error {
	dir := d.ctrDir(id)
	if spare := d.spareDirs.Take(); spare != "" {
		if err := os.Rename(spare, dir); err == nil {
			return nil
		}
		_ = os.RemoveAll(spare)
	}
	return os.MkdirAll(filepath.Join(dir, "rootfs"), 0o700)
}

// recycleCtrDir empties the directory of a removed container (at dir, renamed aside, no
// longer mounted on and with no process of the container left) and keeps it as a spare. It
// reports false when the caller must delete it: the pool is full, or dir holds something it
// cannot make as good as new.
func (d *Daemon) recycleCtrDir(dir string) bool {
	return d.spareDirs.Keep(dir, filepath.Join(d.cfg.Root, "containers"), emptyCtrDir)
}

// emptyCtrDir leaves dir with an empty rootfs directory and the /etc files, emptied and as if
// new. The container had them bind-mounted read-write: its root could have changed their
// owner, mode, extended attributes (ACLs) or inode flags, which truncation keeps. Everything
// is made durable: after a host crash a reused file must not show the previous container's
// content (and a start regenerates an empty one, see etcFilesLost).
func emptyCtrDir(dir string) error {
	names, err := readDirNames(dir)
	if err != nil {
		return err
	}
	keep := map[string]bool{"rootfs": true}
	for _, n := range etcFiles() {
		keep[n] = true
	}
	for _, n := range names {
		if !keep[n] {
			if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
				return err
			}
		}
	}
	// rootfs must be an empty directory and no mount point: never delete through one.
	if rest, err := readDirNames(filepath.Join(dir, "rootfs")); err != nil || len(rest) > 0 {
		return os.ErrExist
	}
	for _, n := range etcFiles() {
		if err := resetFile(filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	return fsutil.SyncDir(dir)
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// resetFile empties the regular file at path (made if missing), gives it root's ownership,
// mode 0644 and no extended attributes, and syncs it.
func resetFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return os.ErrInvalid
	}
	if err := fsutil.Reset(f, 0, 0, 0o644); err != nil {
		return err
	}
	return f.Sync()
}
