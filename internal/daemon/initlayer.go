package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/berth-dev/berth/internal/snapshot"
	"github.com/containerd/errdefs"
)

// The init layer, as Docker has one: the container's /etc/hosts, /etc/hostname and
// /etc/resolv.conf are bind mounts, and their targets must exist. An image without them (most
// images: builders never commit them) would have the container's init create them in the
// container's writable layer at every start, a copy-up of /etc and three creates (~1.5 ms on
// this machine's ext4). Instead one read-only directory per image holds the missing targets,
// empty, and sits above the image's layers in every container's overlay. It is made once, on
// the first start, by rename into place; it is derived (a crash that loses it only costs the
// next start a rebuild), so it is not fsynced. The files never appear in `docker diff` or
// `docker commit`, which read the writable layer.

// initLayerTargets are the bind-mount targets the init layer provides when the image lacks them.
var initLayerTargets = []string{"etc/hosts", "etc/hostname", "etc/resolv.conf"}

func (d *Daemon) initLayersDir() string { return filepath.Join(d.cfg.Root, "initlayers") }

// withInitLayer returns the container's mounts with the image's init layer, if it has content,
// as the overlay's top lower layer. Any failure leaves the mounts as they are: the init then
// creates the targets itself.
func (d *Daemon) withInitLayer(chainID string, mounts []snapshot.Mount) []snapshot.Mount {
	if chainID == "" || len(mounts) != 1 || mounts[0].Type != "overlay" {
		return mounts
	}
	i := slices.IndexFunc(mounts[0].Options, func(o string) bool { return strings.HasPrefix(o, "lowerdir=") })
	if i < 0 {
		return mounts
	}
	lowers := strings.TrimPrefix(mounts[0].Options[i], "lowerdir=")
	dir, err := d.initLayer(chainID, snapshot.SplitLowerdir(lowers))
	if err != nil {
		d.log.Debug("init layer", "chain", chainID, "err", err)
		return mounts
	}
	if dir == "" {
		return mounts
	}
	m := mounts[0]
	m.Options = slices.Clone(m.Options)
	m.Options[i] = "lowerdir=" + snapshot.EscapeLowerdir(dir) + ":" + lowers
	return []snapshot.Mount{m}
}

// initLayer returns the init layer of the image whose layers are lowers (top first), making it
// on first use; "" when the image needs none.
func (d *Daemon) initLayer(chainID string, lowers []string) (string, error) {
	if strings.ContainsAny(chainID, "/\x00") || chainID == "." || chainID == ".." {
		return "", fmt.Errorf("bad chain ID %q", chainID)
	}
	dir := filepath.Join(d.initLayersDir(), chainID)
	if ents, err := os.ReadDir(dir); err == nil {
		if len(ents) == 0 {
			return "", nil
		}
		return dir, nil
	}
	if err := os.MkdirAll(d.initLayersDir(), 0o700); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(d.initLayersDir(), "tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	for _, t := range initLayerTargets {
		state, _ := lookupLayers(lowers, t)
		if state != pathAbsent {
			continue
		}
		// The parent must be a plain directory somewhere in the image, or absent: an image's
		// /etc symlink is left to the init, which follows it.
		pstate, pmode := lookupLayers(lowers, filepath.Dir(t))
		if pstate == pathOther {
			continue
		}
		if pstate == pathAbsent {
			pmode = 0o755
		}
		if err := os.MkdirAll(filepath.Join(tmp, filepath.Dir(t)), pmode); err != nil {
			return "", err
		}
		f, err := os.OpenFile(filepath.Join(tmp, t), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return "", err
		}
		f.Close()
	}
	if err := os.Rename(tmp, dir); err != nil {
		if errors.Is(err, os.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			return d.initLayer(chainID, lowers) // made meanwhile by another start
		}
		return "", err
	}
	if ents, _ := os.ReadDir(dir); len(ents) == 0 {
		return "", nil
	}
	return dir, nil
}

type pathState int

const (
	pathAbsent pathState = iota
	pathDir
	pathOther // a file, a symlink, or anything the layers make unclear
)

// lookupLayers finds what the image shows at p (relative, no symlink followed) through its
// overlay layers, top first: the first layer with an entry decides, a whiteout hides what is
// below, and an opaque directory ends the search under it. A symlinked parent directory in a
// layer is reported as pathOther: the merged view is then the init's to resolve.
func lookupLayers(lowers []string, p string) (pathState, os.FileMode) {
	parts := strings.Split(p, "/")
	for _, l := range lowers {
		cur := l
		for i, part := range parts {
			cur = filepath.Join(cur, part)
			fi, err := os.Lstat(cur)
			if err != nil {
				break // not in this layer; try the one below
			}
			if isWhiteout(fi) {
				return pathAbsent, 0
			}
			if i == len(parts)-1 {
				if fi.IsDir() {
					return pathDir, fi.Mode().Perm()
				}
				return pathOther, 0
			}
			if !fi.IsDir() {
				return pathOther, 0
			}
			if isOpaque(cur) {
				// Nothing below this layer counts under cur: decide within this layer.
				rest := filepath.Join(append([]string{cur}, parts[i+1:]...)...)
				fi, err := os.Lstat(rest)
				switch {
				case err != nil:
					return pathAbsent, 0
				case isWhiteout(fi):
					return pathAbsent, 0
				case fi.IsDir():
					return pathDir, fi.Mode().Perm()
				default:
					return pathOther, 0
				}
			}
		}
	}
	return pathAbsent, 0
}

// sweepInitLayers removes init layers of images whose top layer snapshot is gone, and unfinished
// ones. It runs before the API serves.
func (d *Daemon) sweepInitLayers(ctx context.Context) {
	ents, _ := os.ReadDir(d.initLayersDir())
	for _, e := range ents {
		p := filepath.Join(d.initLayersDir(), e.Name())
		if !strings.HasPrefix(e.Name(), "tmp-") {
			if _, err := d.snap.Stat(ctx, e.Name()); err == nil || !errdefs.IsNotFound(err) {
				continue
			}
		}
		_ = os.RemoveAll(p)
	}
}

// isWhiteout reports an overlayfs whiteout: a character device 0/0.
func isWhiteout(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode()&os.ModeCharDevice != 0 && st.Rdev == 0
}

// isOpaque reports an overlayfs opaque directory.
func isOpaque(dir string) bool {
	b := make([]byte, 1)
	n, err := syscall.Getxattr(dir, "trusted.overlay.opaque", b)
	return err == nil && n == 1 && b[0] == 'y'
}
