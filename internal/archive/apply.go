package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	// opaqueWhiteout in a directory means "hide everything the lower layers had here".
	opaqueWhiteout = ".wh..wh..opq"
	// overlayOpaqueXattr marks an opaque directory in an overlayfs upper dir.
	overlayOpaqueXattr = "trusted.overlay.opaque"
	// maxNameLen bounds entry and link names; the kernel's PATH_MAX is 4096 too.
	maxNameLen = 4096
)

// ApplyOptions controls Apply.
type ApplyOptions struct {
	// Overlay: convert OCI whiteouts to overlayfs form (.wh.x -> 0/0 char device x; .wh..wh..opq ->
	// xattr trusted.overlay.opaque=y on the dir). When false, whiteouts are applied by deleting the
	// target in dir (used to flatten onto a plain directory).
	Overlay bool
	// NoLchown skips chown (tests as non-root).
	NoLchown bool
}

// ApplyResult describes an applied layer.
type ApplyResult struct {
	// DiffID is the sha256 of the uncompressed tar stream.
	DiffID digest.Digest
	// Size is the number of bytes written to disk: approximately the sum of regular file sizes.
	Size int64
}

// Apply extracts a (possibly gzip- or zstd-compressed) layer tar into dir, which must exist. See
// the package documentation for the safety guarantees. Existing entries are replaced as Docker
// does: an entry replaces whatever is at its path, except that a directory entry over an existing
// directory merges (only its metadata is applied).
//
// On error dir may hold a partial layer; the caller removes it (os.RemoveAll always works: nothing
// is left without owner write permission or immutable). Apply checks ctx between entries.
func Apply(ctx context.Context, dir string, r io.Reader, opts ApplyOptions) (ApplyResult, error) {
	rootFD, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return ApplyResult{}, fmt.Errorf("opening layer target %s: %w", dir, err)
	}
	defer unix.Close(rootFD)

	dr, _, err := Decompress(r)
	if err != nil {
		return ApplyResult{}, fmt.Errorf("applying layer: %w", err)
	}
	defer dr.Close()

	dg := digest.SHA256.Digester()
	stream := io.TeeReader(dr, dg.Hash())
	tr := tar.NewReader(stream)
	a := &applier{
		rootFD:  rootFD,
		opts:    opts,
		isRoot:  os.Geteuid() == 0,
		created: map[string]struct{}{},
	}
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return ApplyResult{}, fmt.Errorf("applying layer: %w", err)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return ApplyResult{}, readError(fmt.Sprintf("reading tar header of entry %d", n), err)
		}
		if err := a.entry(hdr, tr); err != nil {
			return ApplyResult{}, fmt.Errorf("layer entry %d %s: %w", n, quoteName(hdr.Name), err)
		}
	}
	// The DiffID covers the whole stream, including the end-of-archive blocks and any padding.
	if _, err := io.Copy(io.Discard, stream); err != nil {
		return ApplyResult{}, readError("reading end of layer", err)
	}
	if err := a.finishDirs(); err != nil {
		return ApplyResult{}, err
	}
	return ApplyResult{DiffID: dg.Digest(), Size: a.size}, nil
}

// readError describes an error from reading the layer stream, saying whether the data was bad.
func readError(what string, err error) error {
	var se *sourceError
	var de *decompressError
	switch {
	case errors.As(err, &de):
		return fmt.Errorf("%s: %w", what, err)
	case errors.As(err, &se):
		return fmt.Errorf("%s: %w", what, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s: %w: truncated layer tar: %w", what, errdefs.ErrInvalidArgument, err)
	case errors.Is(err, tar.ErrHeader):
		return fmt.Errorf("%s: %w: malformed tar header: %w", what, errdefs.ErrInvalidArgument, err)
	default:
		// archive/tar reports other format problems (bad PAX records, sparse maps, ...) with
		// unexported error values; none of them come from the source, which is tagged above.
		return fmt.Errorf("%s: %w: malformed tar: %w", what, errdefs.ErrInvalidArgument, err)
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errdefs.ErrInvalidArgument}, args...)...)
}

// quoteName quotes an attacker-chosen name for an error message, bounding its length.
func quoteName(s string) string {
	const limit = 256
	if len(s) > limit {
		return fmt.Sprintf("%q...(%d bytes)", s[:limit], len(s))
	}
	return fmt.Sprintf("%q", s)
}

type dirMeta struct {
	rel          string
	mode         uint32
	atime, mtime time.Time
}

// applier holds the state of one Apply call.
type applier struct {
	rootFD int
	opts   ApplyOptions
	isRoot bool
	// created records every path this layer put in place, so that opaque whiteouts in flatten mode
	// spare them and whiteouts never delete what the same layer added.
	created map[string]struct{}
	// dirs get their final mode and times after the last entry (creating children changes mtime;
	// a read-only mode would stop later entries).
	dirs []dirMeta
	size int64
}

func (a *applier) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	if err := checkName(hdr.Name); err != nil {
		return err
	}
	rel := cleanRel(hdr.Name)
	if rel == "" {
		if hdr.Typeflag == tar.TypeDir {
			return nil // the root directory belongs to the caller
		}
		return invalid("entry would replace the layer root")
	}
	parent, base := splitRel(rel)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(hdr, parent, base)
	}

	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo:
	case tar.TypeChar, tar.TypeBlock:
		if !a.isRoot {
			return fmt.Errorf("%w: device node needs root", errdefs.ErrPermissionDenied)
		}
	default:
		return invalid("unsupported tar entry type %q", hdr.Typeflag)
	}
	if err := checkOwner(hdr); err != nil {
		return err
	}
	var linkTarget string
	switch hdr.Typeflag {
	case tar.TypeLink:
		if err := checkName(hdr.Linkname); err != nil {
			return fmt.Errorf("hardlink target: %w", err)
		}
		linkTarget = cleanRel(hdr.Linkname)
		if linkTarget == "" {
			return invalid("hardlink to the layer root")
		}
		if linkTarget == rel {
			return invalid("hardlink to itself")
		}
	case tar.TypeSymlink:
		if hdr.Linkname == "" || len(hdr.Linkname) > maxNameLen || strings.IndexByte(hdr.Linkname, 0) >= 0 {
			return invalid("bad symlink target %s", quoteName(hdr.Linkname))
		}
	}

	pfd, err := a.openParent(parent, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)

	var st unix.Stat_t
	err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	exists := err == nil
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "lstat", Path: rel, Err: err}
	}
	if exists && !(st.Mode&unix.S_IFMT == unix.S_IFDIR && hdr.Typeflag == tar.TypeDir) {
		if err := removeAt(pfd, base); err != nil {
			return fmt.Errorf("replacing existing entry: %w", err)
		}
		exists = false
	}

	mode := uint32(hdr.Mode & 0o7777)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if !exists {
			if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
				return &os.PathError{Op: "mkdir", Path: rel, Err: err}
			}
		}
	case tar.TypeReg, tar.TypeGNUSparse:
		if err := a.writeFile(pfd, base, rel, r); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return &os.PathError{Op: "symlink", Path: rel, Err: err}
		}
	case tar.TypeLink:
		if err := a.link(linkTarget, pfd, base); err != nil {
			return err
		}
		// The link shares the target's inode, whose metadata was set by the target's entry.
		a.created[rel] = struct{}{}
		return nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if hdr.Devmajor < 0 || hdr.Devmajor > math.MaxUint32 || hdr.Devminor < 0 || hdr.Devminor > math.MaxUint32 {
			return invalid("device number out of range")
		}
		kind, dev := uint32(unix.S_IFIFO), uint64(0)
		switch hdr.Typeflag {
		case tar.TypeChar:
			kind, dev = unix.S_IFCHR, unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		case tar.TypeBlock:
			kind, dev = unix.S_IFBLK, unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		}
		if err := unix.Mknodat(pfd, base, kind|0o600, int(dev)); err != nil {
			return &os.PathError{Op: "mknod", Path: rel, Err: err}
		}
	}
	a.created[rel] = struct{}{}
	return a.setMeta(pfd, base, rel, hdr, mode)
}

func checkName(name string) error {
	if len(name) > maxNameLen {
		return invalid("name too long (%d bytes)", len(name))
	}
	if strings.IndexByte(name, 0) >= 0 {
		return invalid("name contains a NUL byte")
	}
	return nil
}

func checkOwner(hdr *tar.Header) error {
	// uid/gid -1 mean "unchanged" to chown; anything outside [0, 2^32-2] is not an id.
	if hdr.Uid < 0 || hdr.Gid < 0 || int64(hdr.Uid) >= math.MaxUint32 || int64(hdr.Gid) >= math.MaxUint32 {
		return invalid("uid/gid out of range (%d/%d)", hdr.Uid, hdr.Gid)
	}
	return nil
}

// openParent opens the directory parent (clean, relative) for use as a dirfd. Missing components
// are created with mode 0755, as Docker does, when create is set.
func (a *applier) openParent(parent string, create bool) (int, error) {
	const flags = unix.O_PATH | unix.O_DIRECTORY
	fd, err := openInRoot(a.rootFD, parent, flags)
	if err == nil || !create || !errors.Is(err, unix.ENOENT) {
		if err != nil {
			return -1, fmt.Errorf("parent directory: %w", err)
		}
		return fd, nil
	}
	cur, err := openInRoot(a.rootFD, "", flags)
	if err != nil {
		return -1, err
	}
	comps := strings.Split(parent, "/")
	for i, c := range comps {
		prefix := strings.Join(comps[:i+1], "/")
		next, err := openInRoot(a.rootFD, prefix, flags)
		if errors.Is(err, unix.ENOENT) {
			// cur is prefix's parent as resolved in the root; c is a plain name.
			if merr := unix.Mkdirat(cur, c, 0o755); merr != nil && !errors.Is(merr, unix.EEXIST) {
				unix.Close(cur)
				return -1, &os.PathError{Op: "mkdir", Path: prefix, Err: merr}
			}
			a.created[prefix] = struct{}{}
			next, err = openInRoot(a.rootFD, prefix, flags)
		}
		unix.Close(cur)
		if err != nil {
			return -1, fmt.Errorf("parent directory: %w", err)
		}
		cur = next
	}
	return cur, nil
}

func (a *applier) writeFile(pfd int, base, rel string, r io.Reader) error {
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "create", Path: rel, Err: err}
	}
	f := os.NewFile(uintptr(fd), rel)
	n, err := io.Copy(f, r)
	a.size += n
	cerr := f.Close()
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("writing file: %w", err)
		}
		return readError("reading file data", err)
	}
	if cerr != nil {
		return fmt.Errorf("closing %s: %w", rel, cerr)
	}
	return nil
}

func (a *applier) link(target string, pfd int, base string) error {
	tparent, tbase := splitRel(target)
	tfd, err := openInRoot(a.rootFD, tparent, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("hardlink target %s: %w", quoteName(target), err)
	}
	defer unix.Close(tfd)
	// flags 0: a symlink in the last component is linked itself, never followed.
	if err := unix.Linkat(tfd, tbase, pfd, base, 0); err != nil {
		return fmt.Errorf("hardlink to %s: %w", quoteName(target), err)
	}
	return nil
}

// setMeta applies owner, mode, xattrs and times. Order matters: chown clears setuid/setgid bits
// and file capabilities, so mode and xattrs come after it.
func (a *applier) setMeta(pfd int, base, rel string, hdr *tar.Header, mode uint32) error {
	if !a.opts.NoLchown {
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "lchown", Path: rel, Err: err}
		}
	}
	isDir := hdr.Typeflag == tar.TypeDir
	if hdr.Typeflag != tar.TypeSymlink {
		m := mode
		if isDir {
			m |= 0o700 // final mode in finishDirs
		}
		if err := chmodAt(pfd, base, m); err != nil {
			return err
		}
	}
	if err := a.setXattrs(pfd, base, rel, hdr); err != nil {
		return err
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	if isDir {
		a.dirs = append(a.dirs, dirMeta{rel: rel, mode: mode, atime: atime, mtime: hdr.ModTime})
		return nil
	}
	return setTimes(pfd, base, rel, atime, hdr.ModTime)
}

func setTimes(pfd int, base, rel string, atime, mtime time.Time) error {
	ts := []unix.Timespec{timespec(atime), timespec(mtime)}
	if err := unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: rel, Err: err}
	}
	return nil
}

func timespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{Nsec: unix.UTIME_OMIT}
	}
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

// isOverlayXattr reports xattrs that carry overlayfs metadata; a layer must not set them directly.
func isOverlayXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.")
}

func (a *applier) setXattrs(pfd int, base, rel string, hdr *tar.Header) error {
	const prefix = "SCHILY.xattr."
	var names []string
	for k := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, prefix); ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		if isOverlayXattr(name) {
			slog.Debug("archive: dropping overlay xattr from layer", "path", rel, "xattr", name)
			continue
		}
		err := unix.Lsetxattr(procPath(pfd, base), name, []byte(hdr.PAXRecords[prefix+name]), 0)
		switch {
		case err == nil:
		case errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EPERM) && !a.isRoot:
			// The filesystem or our privileges cannot hold this xattr (e.g. trusted.* as non-root);
			// Docker ignores these too.
			slog.Debug("archive: ignoring xattr", "path", rel, "xattr", name, "err", err)
		default:
			return fmt.Errorf("setting xattr %s on %s: %w", quoteName(name), rel, err)
		}
	}
	return nil
}

func (a *applier) whiteout(hdr *tar.Header, parent, base string) error {
	if base == opaqueWhiteout {
		return a.opaque(parent)
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return invalid("bad whiteout name %s", quoteName(base))
	}
	rel := path.Join(parent, name)
	if _, ok := a.created[rel]; ok {
		// Whiteouts only hide lower layers, never what this layer itself added.
		return nil
	}
	if !a.opts.Overlay {
		pfd, err := a.openParent(parent, false)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil // nothing there to delete
		}
		if err != nil {
			return err
		}
		defer unix.Close(pfd)
		if err := removeAt(pfd, name); err != nil {
			return fmt.Errorf("applying whiteout: %w", err)
		}
		return nil
	}
	if err := checkOwner(hdr); err != nil {
		return err
	}
	pfd, err := a.openParent(parent, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := removeAt(pfd, name); err != nil {
		return fmt.Errorf("replacing existing entry with whiteout: %w", err)
	}
	// A 0/0 character device is overlayfs's whiteout; unprivileged users may create it (>= 5.8).
	if err := unix.Mknodat(pfd, name, unix.S_IFCHR, 0); err != nil {
		return &os.PathError{Op: "mknod whiteout", Path: rel, Err: err}
	}
	a.created[rel] = struct{}{}
	if !a.opts.NoLchown {
		if err := unix.Fchownat(pfd, name, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "lchown", Path: rel, Err: err}
		}
	}
	return nil
}

// opaque handles dir/.wh..wh..opq: the directory hides everything of the lower layers.
func (a *applier) opaque(parent string) error {
	if a.opts.Overlay {
		pfd, err := a.openParent(parent, true)
		if err != nil {
			return err
		}
		unix.Close(pfd)
		fd, err := openInRoot(a.rootFD, parent, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("opaque directory: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.Fsetxattr(fd, overlayOpaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("marking %s opaque (needs root): %w", quoteName(parent), err)
		}
		return nil
	}
	fd, err := openInRoot(a.rootFD, parent, unix.O_RDONLY|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opaque directory: %w", err)
	}
	defer unix.Close(fd)
	return a.pruneNotCreated(fd, parent)
}

// pruneNotCreated removes everything below the directory dirFD (at rel) that this layer did not
// create, keeping the layer's own entries.
func (a *applier) pruneNotCreated(dirFD int, rel string) error {
	dfd, err := unix.Dup(dirFD)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(dfd), rel)
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("reading %s: %w", quoteName(rel), err)
	}
	for _, n := range names {
		child := path.Join(rel, n)
		if _, ok := a.created[child]; !ok {
			if err := removeAt(dirFD, n); err != nil {
				return fmt.Errorf("applying opaque whiteout: %w", err)
			}
			continue
		}
		cfd, err := unix.Openat(dirFD, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "open", Path: child, Err: err}
		}
		err = a.pruneNotCreated(cfd, child)
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}

// finishDirs gives directories their final mode and times, deepest (latest) first so that a
// directory's own restrictive mode never blocks fixing its children.
func (a *applier) finishDirs() error {
	last := make(map[string]int, len(a.dirs))
	for i, d := range a.dirs {
		last[d.rel] = i // a later entry for the same directory wins
	}
	for i := len(a.dirs) - 1; i >= 0; i-- {
		d := a.dirs[i]
		if last[d.rel] != i {
			continue
		}
		parent, base := splitRel(d.rel)
		pfd, err := openInRoot(a.rootFD, parent, unix.O_PATH|unix.O_DIRECTORY)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			continue // removed by a later entry
		}
		if err != nil {
			return fmt.Errorf("finishing directory %s: %w", quoteName(d.rel), err)
		}
		var st unix.Stat_t
		err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			unix.Close(pfd) // replaced by a later non-directory entry
			continue
		}
		err = chmodAt(pfd, base, d.mode)
		if err == nil {
			err = setTimes(pfd, base, d.rel, d.atime, d.mtime)
		}
		unix.Close(pfd)
		if err != nil {
			return fmt.Errorf("finishing directory: %w", err)
		}
	}
	return nil
}
