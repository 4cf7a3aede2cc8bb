// Package fsutil holds small filesystem helpers shared across berth, chiefly atomic file writes:
// a reader of the target path sees the old content or the new, never a torn file, even if the
// process dies mid-write.
package fsutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// WriteFileAtomic writes data to path through a temporary file in the same directory, fsyncs it,
// renames it over path and fsyncs the directory.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeFileAtomic(path, data, perm, true)
}

// ReplaceFile is WriteFileAtomic without the fsyncs: readers still never see a torn file, and
// a killed process leaves the old content or the new, but a host crash may leave the file empty.
// It is for files derived from durable state, which the owner regenerates when it finds them
// empty; each fsync costs a quarter to half a millisecond on the paths that write them.
func ReplaceFile(path string, data []byte, perm os.FileMode) error {
	return writeFileAtomic(path, data, perm, false)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode, durable bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if durable {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	ok = true
	if !durable {
		return nil
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory so that a rename or create inside it survives a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// OpenInRoot opens name inside root the way a process chrooted at root would: "..", absolute
// symlinks and symlinked parents all stay inside root (openat2 RESOLVE_IN_ROOT). Use it for any
// file of a container's filesystem the host reads, because the image's author controls every
// link in it.
func OpenInRoot(root, name string, flags int) (*os.File, error) {
	dirfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", root, err)
	}
	defer unix.Close(dirfd)
	fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{
		Flags:   uint64(flags) | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, &os.PathError{Op: "openat2", Path: filepath.Join(root, name), Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(root, name)), nil
}

// fsTopDirFlag is ext4's FS_TOPDIR_FL ("chattr +T").
const fsTopDirFlag = 0x00020000

// SpreadSubdirs marks dir, where the filesystem supports it (ext4), as the top of
// hierarchies: the directories made in it are then spread over the filesystem's inode groups,
// as the root directory's are, instead of sharing dir's group. For directories whose
// children are made and deleted all the time (containers, snapshots): ext4 without a journal
// skips, one by one, every inode of a group freed in the last 30 s at each allocation there,
// so children crowded into one group make every allocation slower than the last.
func SpreadSubdirs(dir string) {
	f, err := os.Open(dir)
	if err != nil {
		return
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil || flags&fsTopDirFlag != 0 {
		return
	}
	_ = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags|fsTopDirFlag))
}

// plainFlags are the inode flags a file or directory gets from the filesystem itself (ext4's
// extents, huge file, inline data, directory index, casefold, top-of-hierarchy); any other
// was set by someone (chattr).
const plainFlags = 0x00080000 | 0x00040000 | 0x10000000 | 0x00001000 | 0x40000000 | fsTopDirFlag

// Reset gives the file or directory f the owner uid:gid and the permission bits mode, removes
// its extended attributes (ACLs included), and fails if it has inode flags someone set
// (sync, append-only, immutable, no-dump...), which it cannot always clear. For reusing a file
// that another container could change: its next user must find it as if new.
func Reset(f *os.File, uid, gid int, mode os.FileMode) error {
	fd := int(f.Fd())
	if flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS); err == nil && flags&^plainFlags != 0 {
		return fmt.Errorf("%s has inode flags %#x", f.Name(), flags)
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return fmt.Errorf("reset %s: %w", f.Name(), err)
	}
	if err := unix.Fchmod(fd, uint32(mode.Perm())); err != nil {
		return fmt.Errorf("reset %s: %w", f.Name(), err)
	}
	return clearXattrs(fd, f.Name())
}

// clearXattrs removes every extended attribute of the file open at fd.
func clearXattrs(fd int, name string) error {
	buf := make([]byte, 4096)
	n, err := unix.Flistxattr(fd, buf)
	if errors.Is(err, unix.ERANGE) {
		if n, err = unix.Flistxattr(fd, nil); err == nil {
			buf = make([]byte, n)
			n, err = unix.Flistxattr(fd, buf)
		}
	}
	if errors.Is(err, unix.ENOTSUP) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list extended attributes of %s: %w", name, err)
	}
	for _, a := range strings.Split(string(buf[:n]), "\x00") {
		if a == "" {
			continue
		}
		if err := unix.Fremovexattr(fd, a); err != nil && !errors.Is(err, unix.ENODATA) {
			return fmt.Errorf("remove extended attribute %s of %s: %w", a, name, err)
		}
	}
	return nil
}
