package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// WriteDiff writes an uncompressed OCI layer tar of an overlayfs upper dir: a 0/0 character device
// becomes a ".wh.<name>" whiteout, an opaque directory (trusted.overlay.opaque=y) becomes the
// directory followed by its ".wh..wh..opq" entry. Entries are written in sorted order with mtimes
// truncated to seconds, so the same tree always gives the same bytes. Used by `commit`.
func WriteDiff(ctx context.Context, w io.Writer, upper string) error {
	return writeTree(ctx, w, upper, true)
}

// WriteDir writes an uncompressed tar of a whole directory tree (export, cp), in the same
// deterministic order as WriteDiff but without whiteout conversion. The root itself is not an entry.
func WriteDir(ctx context.Context, w io.Writer, dir string) error {
	return writeTree(ctx, w, dir, false)
}

type inode struct{ dev, ino uint64 }

type treeWriter struct {
	ctx   context.Context
	tw    *tar.Writer
	diff  bool
	links map[inode]string
}

func writeTree(ctx context.Context, w io.Writer, root string, diff bool) error {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", root, err)
	}
	t := &treeWriter{ctx: ctx, tw: tar.NewWriter(w), diff: diff, links: map[inode]string{}}
	err = t.dir(fd, "")
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("writing tar of %s: %w", root, err)
	}
	if err := t.tw.Close(); err != nil {
		return fmt.Errorf("writing tar of %s: %w", root, err)
	}
	return nil
}

// dir writes the entries of the directory open as dirFD (at rel) in sorted order. It owns no fd.
func (t *treeWriter) dir(dirFD int, rel string) error {
	dup, err := unix.Dup(dirFD)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(dup), rel)
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("reading directory %q: %w", rel, err)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := t.ctx.Err(); err != nil {
			return err
		}
		if err := t.entry(dirFD, rel, name); err != nil {
			return err
		}
	}
	return nil
}

func (t *treeWriter) entry(dirFD int, parent, name string) error {
	rel := path.Join(parent, name)
	var st unix.Stat_t
	if err := unix.Fstatat(dirFD, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil // removed while we walk
		}
		return &os.PathError{Op: "lstat", Path: rel, Err: err}
	}
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, 0),
		Format:  tar.FormatPAX,
	}
	ft := st.Mode & unix.S_IFMT
	if t.diff && ft == unix.S_IFCHR && st.Rdev == 0 {
		// overlayfs whiteout (possibly a hardlink to a shared whiteout inode, so before link
		// tracking).
		hdr.Name = path.Join(parent, whiteoutPrefix+name)
		hdr.Typeflag = tar.TypeReg
		hdr.Mode &= 0o777
		return t.header(hdr)
	}
	if ft != unix.S_IFDIR && st.Nlink > 1 {
		key := inode{dev: st.Dev, ino: st.Ino}
		if first, ok := t.links[key]; ok {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = first
			return t.header(hdr)
		}
		t.links[key] = rel
	}
	xattrs, err := listXattrs(dirFD, name)
	if err != nil {
		return fmt.Errorf("xattrs of %q: %w", rel, err)
	}
	opaque := false
	for k, v := range xattrs {
		if isOverlayXattr(k) {
			if t.diff && (k == overlayOpaqueXattr || k == "user.overlay.opaque") && string(v) == "y" {
				opaque = true
			}
			continue
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+k] = string(v)
	}

	switch ft {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
		if err := t.header(hdr); err != nil {
			return err
		}
		if opaque {
			// Before the directory's children, as the OCI spec recommends.
			wh := &tar.Header{Name: path.Join(rel, opaqueWhiteout), Typeflag: tar.TypeReg, Mode: 0o644,
				Uid: hdr.Uid, Gid: hdr.Gid, ModTime: hdr.ModTime, Format: tar.FormatPAX}
			if err := t.header(wh); err != nil {
				return err
			}
		}
		fd, err := unix.Openat(dirFD, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: rel, Err: err}
		}
		err = t.dir(fd, rel)
		unix.Close(fd)
		return err
	case unix.S_IFREG:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size
		return t.file(dirFD, name, hdr, st)
	case unix.S_IFLNK:
		target, err := readlinkAt(dirFD, name)
		if err != nil {
			return &os.PathError{Op: "readlink", Path: rel, Err: err}
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if ft == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64(unix.Major(st.Rdev))
		hdr.Devminor = int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil // sockets cannot be archived
	}
	return t.header(hdr)
}

func (t *treeWriter) header(hdr *tar.Header) error {
	if err := t.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("tar header for %q: %w", hdr.Name, err)
	}
	return nil
}

func (t *treeWriter) file(dirFD int, name string, hdr *tar.Header, st unix.Stat_t) error {
	// O_NONBLOCK: if the file was swapped for a FIFO under us, do not hang on open.
	fd, err := unix.Openat(dirFD, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: hdr.Name, Err: err}
	}
	f := os.NewFile(uintptr(fd), hdr.Name)
	defer f.Close()
	var fst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil {
		return &os.PathError{Op: "fstat", Path: hdr.Name, Err: err}
	}
	if fst.Ino != st.Ino || fst.Dev != st.Dev || fst.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%q changed while being archived", hdr.Name)
	}
	if err := t.header(hdr); err != nil {
		return err
	}
	n, err := io.Copy(t.tw, io.LimitReader(f, hdr.Size))
	if err != nil {
		return fmt.Errorf("archiving %q: %w", hdr.Name, err)
	}
	if n != hdr.Size {
		return fmt.Errorf("%q shrank while being archived", hdr.Name)
	}
	return nil
}

func readlinkAt(dirFD int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirFD, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// listXattrs returns the extended attributes of name in dirFD without following a symlink.
func listXattrs(dirFD int, name string) (map[string][]byte, error) {
	p := procPath(dirFD, name)
	var buf []byte
	for {
		sz, err := unix.Llistxattr(p, nil)
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if sz == 0 {
			return nil, nil
		}
		buf = make([]byte, sz)
		sz, err = unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew meanwhile
		}
		if err != nil {
			return nil, err
		}
		buf = buf[:sz]
		break
	}
	out := map[string][]byte{}
	for _, k := range strings.Split(string(bytes.TrimRight(buf, "\x00")), "\x00") {
		if k == "" {
			continue
		}
		v, err := getXattr(p, k)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading xattr %q: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}

func getXattr(p, name string) ([]byte, error) {
	for {
		sz, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, sz)
		sz, err = unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:sz], nil
	}
}
