package archive

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// cleanRel turns a tar entry name into a clean path relative to the extraction root: ".." cannot
// climb above the root and absolute names are relative to it. "" means the root itself.
func cleanRel(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// splitRel splits a clean relative path into its parent ("" for the root) and last component.
func splitRel(rel string) (parent, base string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return "", rel
	}
	return rel[:i], rel[i+1:]
}

// openInRoot opens rel (clean, relative) below rootFD, resolving every component — including
// symlinks stored by earlier entries — as if rootFD were "/". It can never leave the root.
func openInRoot(rootFD int, rel string, flags uint64) (int, error) {
	if rel == "" {
		rel = "."
	}
	how := unix.OpenHow{
		Flags:   flags | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for range 64 {
		fd, err := unix.Openat2(rootFD, rel, &how)
		// EAGAIN: a concurrent rename raced with the lookup; the kernel asks us to retry.
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "openat2", Path: rel, Err: err}
		}
		return fd, nil
	}
	return -1, &os.PathError{Op: "openat2", Path: rel, Err: unix.EAGAIN}
}

// procPath names the entry base inside the directory open as dirFD without following a symlink
// at base (for the l*xattr calls, which have no *at form in x/sys).
func procPath(dirFD int, base string) string {
	return fmt.Sprintf("/proc/self/fd/%d/%s", dirFD, base)
}

// removeAt removes name (any type, recursively for directories) from the directory dirFD without
// following symlinks. A missing entry is not an error.
func removeAt(dirFD int, name string) error {
	err := unix.Unlinkat(dirFD, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return &os.PathError{Op: "unlinkat", Path: name, Err: err}
	}
	fd, err := unix.Openat(dirFD, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EACCES) {
		// An unreadable directory we own (non-root): make it readable so it can be emptied.
		if cerr := unix.Fchmodat(dirFD, name, 0o700, 0); cerr == nil {
			fd, err = unix.Openat(dirFD, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	for {
		// Read a batch, then delete it: deleting while iterating can skip entries.
		names, rerr := f.Readdirnames(1024)
		for _, n := range names {
			if err := removeAt(fd, n); err != nil {
				return fmt.Errorf("%s/%w", name, err)
			}
		}
		if errors.Is(rerr, io.EOF) || (rerr == nil && len(names) == 0) {
			break
		}
		if rerr != nil {
			return fmt.Errorf("reading directory %s: %w", name, rerr)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("rewinding directory %s: %w", name, err)
		}
	}
	if err := unix.Unlinkat(dirFD, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "rmdir", Path: name, Err: err}
	}
	return nil
}

// chmodAt sets the mode of a non-symlink without following a symlink at name.
func chmodAt(dirFD int, name string, mode uint32) error {
	err := unix.Fchmodat(dirFD, name, mode, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		// Kernel without fchmodat2 (< 6.6): check the type, then chmod without the flag.
		var st unix.Stat_t
		if err := unix.Fstatat(dirFD, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "lstat", Path: name, Err: err}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return nil
		}
		err = unix.Fchmodat(dirFD, name, mode, 0)
	}
	if err != nil {
		return &os.PathError{Op: "chmod", Path: name, Err: err}
	}
	return nil
}
