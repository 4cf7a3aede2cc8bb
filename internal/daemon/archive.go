package daemon

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/berth-dev/berth/internal/api"
	"github.com/berth-dev/berth/internal/archive"
	"github.com/berth-dev/berth/internal/snapshot"
	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	mcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
)

// withRootfs runs fn with the container's root filesystem mounted: the live mount of a running
// container, or a temporary mount of a stopped one. The container's lock is held throughout so
// that no start or removal races the temporary mount.
func (d *Daemon) withRootfs(ctx context.Context, ref string, fn func(rec *ctrRecord, rootfs string) error) error {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rec.State.Status == mcontainer.StateRemoving || c.rec.State.Status == mcontainer.StateDead {
		return conflict(fmt.Sprintf("container %s is being removed", c.rec.ID))
	}
	rootfs := d.rootfsDir(c.rec.ID)
	c.takePremount() // mounted again below, and unmounted after
	if !c.running() {
		mounts, err := d.snap.Mounts(ctx, snapKey(c.rec.ID))
		if err != nil {
			return fmt.Errorf("root filesystem of %s: %w", c.rec.ID, err)
		}
		_ = snapshot.UnmountAll(rootfs)
		if err := snapshot.MountAll(mounts, rootfs); err != nil {
			return fmt.Errorf("mount root filesystem: %w", err)
		}
		defer func() { _ = snapshot.UnmountAll(rootfs) }()
	}
	rec := c.rec
	return fn(&rec, rootfs)
}

// ContainerExport writes the container's whole filesystem as a tar.
func (d *Daemon) ContainerExport(ctx context.Context, ref string, w io.Writer) error {
	return d.withRootfs(ctx, ref, func(rec *ctrRecord, rootfs string) error {
		d.events.Publish(events.ContainerEventType, events.ActionExport, rec.ID, ctrAttrs(rec))
		return archive.WriteDir(ctx, w, rootfs)
	})
}

// resolveInRoot turns a container path into a host path inside rootfs, following symlinks the
// way the container would see them: a link can never lead out of rootfs. The final component is
// not followed when it is a symlink (docker cp copies the link itself) unless follow is set.
func resolveInRoot(rootfs, p string, follow bool) (string, error) {
	if !path.IsAbs(p) {
		p = "/" + p
	}
	clean := path.Clean(p)
	if follow || clean == "/" {
		return securejoin.SecureJoin(rootfs, clean)
	}
	dir, base := path.Split(clean)
	hostDir, err := securejoin.SecureJoin(rootfs, dir)
	if err != nil {
		return "", err
	}
	return filepath.Join(hostDir, base), nil
}

func pathStat(name, host string) (mcontainer.PathStat, error) {
	fi, err := os.Lstat(host)
	if err != nil {
		return mcontainer.PathStat{}, err
	}
	st := mcontainer.PathStat{Name: name, Size: fi.Size(), Mode: fi.Mode(), Mtime: fi.ModTime()}
	if fi.Mode()&os.ModeSymlink != 0 {
		st.LinkTarget, _ = os.Readlink(host)
	}
	return st, nil
}

func notFoundPath(ref, p string) error {
	return errdefs.ErrNotFound.WithMessage(fmt.Sprintf("Could not find the file %s in container %s", p, ref))
}

// ContainerStatPath describes a path in the container (HEAD /containers/{id}/archive).
func (d *Daemon) ContainerStatPath(ctx context.Context, ref, p string) (mcontainer.PathStat, error) {
	var st mcontainer.PathStat
	err := d.withRootfs(ctx, ref, func(rec *ctrRecord, rootfs string) error {
		host, _, err := resolveMounted(rec, rootfs, p, false)
		if err != nil {
			return err
		}
		st, err = pathStat(path.Base(path.Clean("/"+p)), host)
		if errors.Is(err, fs.ErrNotExist) {
			return notFoundPath(ref, p)
		}
		return err
	})
	return st, err
}

// ContainerArchive returns a tar of a path in the container; entries are named from the path's
// base name, as docker cp expects. The tar is produced while the rootfs stays mounted.
func (d *Daemon) ContainerArchive(ctx context.Context, ref, p string) (io.ReadCloser, mcontainer.PathStat, error) {
	type result struct {
		st  mcontainer.PathStat
		err error
	}
	pr, pw := io.Pipe()
	started := make(chan result, 1)
	go func() {
		err := d.withRootfs(ctx, ref, func(rec *ctrRecord, rootfs string) error {
			host, _, err := resolveMounted(rec, rootfs, p, false)
			if err != nil {
				started <- result{err: err}
				return err
			}
			// A trailing "/." or "/" asks for a directory's content.
			base := path.Base(path.Clean("/" + p))
			st, err := pathStat(base, host)
			if errors.Is(err, fs.ErrNotExist) {
				err = notFoundPath(ref, p)
			}
			started <- result{st, err}
			if err != nil {
				return err
			}
			if strings.HasSuffix(p, "/.") {
				base = "."
			}
			return tarPath(ctx, pw, host, base)
		})
		_ = pw.CloseWithError(err)
	}()
	r := <-started
	if r.err != nil {
		_ = pr.Close()
		return nil, mcontainer.PathStat{}, r.err
	}
	return pr, r.st, nil
}

// tarPath writes host (a file, link or directory tree) into a tar with names under base.
// Symlinks are stored, never followed.
func tarPath(ctx context.Context, w io.Writer, host, base string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(host, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rel, _ := filepath.Rel(host, p)
		name := filepath.ToSlash(filepath.Join(base, rel))
		fi, err := de.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = name
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
		}
		hdr.Uname, hdr.Gname = "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			_ = f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// ContainerExtract unpacks a tar into a directory of the container (PUT .../archive). The tar
// cannot write outside that directory, and the directory itself is resolved inside the rootfs.
func (d *Daemon) ContainerExtract(ctx context.Context, ref, p string, opts api.ArchiveOptions, r io.Reader) error {
	return d.withRootfs(ctx, ref, func(rec *ctrRecord, rootfs string) error {
		host, mp, err := resolveMounted(rec, rootfs, p, true)
		if err != nil {
			return err
		}
		switch {
		case mp != nil && !mp.RW:
			return errdefs.ErrFailedPrecondition.WithMessage(fmt.Sprintf("mounted volume is marked read-only: %s", mp.Destination))
		case mp == nil && rec.HostConfig.ReadonlyRootfs:
			return errdefs.ErrFailedPrecondition.WithMessage("container rootfs is marked read-only")
		}
		fi, err := os.Stat(host)
		if errors.Is(err, fs.ErrNotExist) {
			return notFoundPath(ref, p)
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("extraction point is not a directory: %s", p))
		}
		_, err = archive.Apply(ctx, host, r, archive.ApplyOptions{NoLchown: !opts.CopyUIDGID})
		return invalidIfArchive(err)
	})
}

func invalidIfArchive(err error) error {
	if err == nil || errdefs.IsInvalidArgument(err) {
		return err
	}
	if strings.Contains(err.Error(), "tar") || strings.Contains(err.Error(), "archive") {
		return errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	return err
}

// ContainerChanges lists what the container changed relative to its image: every path in its
// writable layer, as added (A), changed (C) or deleted (D).
func (d *Daemon) ContainerChanges(ctx context.Context, ref string) ([]mcontainer.FilesystemChange, error) {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return nil, err
	}
	id := c.snapshotOf().ID
	upper, err := d.snap.UpperDir(ctx, snapKey(id))
	if err != nil {
		return nil, err
	}
	mounts, err := d.snap.Mounts(ctx, snapKey(id))
	if err != nil {
		return nil, err
	}
	var lowers []string
	for _, m := range mounts {
		for _, o := range m.Options {
			if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
				lowers = append(lowers, strings.Split(v, ":")...)
			}
		}
	}
	inLower := func(rel string) bool {
		for _, l := range lowers {
			if _, err := os.Lstat(filepath.Join(l, rel)); err == nil {
				return true
			}
		}
		return false
	}
	var out []mcontainer.FilesystemChange
	err = filepath.WalkDir(upper, func(p string, de fs.DirEntry, err error) error {
		if err != nil || p == upper {
			return err
		}
		rel, _ := filepath.Rel(upper, p)
		name := "/" + filepath.ToSlash(rel)
		fi, err := de.Info()
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeCharDevice != 0 {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Rdev == 0 {
				out = append(out, mcontainer.FilesystemChange{Kind: mcontainer.ChangeDelete, Path: name})
				return nil
			}
		}
		kind := mcontainer.ChangeAdd
		if inLower(rel) {
			kind = mcontainer.ChangeModify
		}
		out = append(out, mcontainer.FilesystemChange{Kind: kind, Path: name})
		return nil
	})
	slices.SortFunc(out, func(a, b mcontainer.FilesystemChange) int { return strings.Compare(a.Path, b.Path) })
	if out == nil {
		out = []mcontainer.FilesystemChange{}
	}
	return out, err
}
