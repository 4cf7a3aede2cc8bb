package build

import (
	"archive/tar"
	"bufio"
	"compress/bzip2"

	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/ulikunitz/xz"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/berth-dev/berth/internal/fsutil"
	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/user"
)

// source is one file or directory to copy, resolved inside its root: no component of rel is a
// symlink, so host (root/rel) names what a process chrooted at root would see.
type source struct {
	root string
	rel  string // cleaned, relative to root; "" is the root itself
	name string // the base name a copied file keeps in a destination directory
	host string
	fi   fs.FileInfo
}

func hasGlob(p string) bool { return strings.ContainsAny(p, `*?[`) }

// resolveSources finds the files the patterns name inside root, following symlinks only inside
// root (as if chrooted there): a link to /etc/passwd in a build context names the context's own
// etc/passwd, which does not exist.
func resolveSources(root string, patterns []string) ([]source, error) {
	var out []source
	for _, p := range patterns {
		if strings.Contains(p, "://") {
			return nil, errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("source %s: downloading URLs is not supported by berth's builder (no network access during builds); download the file into the build context instead", p))
		}
		rels := []string{cleanRel(p)}
		if hasGlob(p) {
			var err error
			if rels, err = globInRoot(root, cleanRel(p)); err != nil {
				return nil, err
			}
			if len(rels) == 0 {
				return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("no source files were specified: %s matches nothing", p))
			}
		}
		for _, rel := range rels {
			host, err := securejoin.SecureJoin(root, rel)
			if err != nil {
				return nil, fmt.Errorf("resolve %s: %w", rel, err)
			}
			fi, err := os.Lstat(host)
			if err != nil {
				return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("file not found in build context or excluded by .dockerignore: %s", p))
			}
			r, _ := filepath.Rel(root, host)
			name := path.Base("/" + rel)
			out = append(out, source{root: root, rel: cleanRel(r), name: name, host: host, fi: fi})
		}
	}
	return out, nil
}

// globInRoot matches pattern against the paths under root, without following symlinks.
func globInRoot(root, pattern string) ([]string, error) {
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid pattern %q: %v", pattern, err))
	}
	depth := strings.Count(pattern, "/")
	var out []string
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if ok, _ := path.Match(pattern, rel); ok {
			out = append(out, rel)
		}
		if de.IsDir() && strings.Count(rel, "/") >= depth {
			return filepath.SkipDir
		}
		return nil
	})
	return out, err
}

// walkSource calls fn for the source and, for a directory, everything below it in lexical
// order, with the path relative to the source (the source itself is "").
func walkSource(s source, fn func(rel, host string, fi fs.FileInfo) error) error {
	if !s.fi.IsDir() {
		return fn("", s.host, s.fi)
	}
	return filepath.WalkDir(s.host, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.host, p)
		if rel == "." {
			rel = ""
		}
		return fn(filepath.ToSlash(rel), p, fi)
	})
}

// checksum hashes the sources' names, types, permissions, link targets and contents (not their
// times or owners, which the copy resets), as the classic builder's cache does. The result is
// what the history shows: "file:<hex>", "dir:<hex>" or "multi:<hex>".
func checksum(srcs []source) (string, error) {
	hashOne := func(s source) (string, error) {
		h := sha256.New()
		err := walkSource(s, func(rel, host string, fi fs.FileInfo) error {
			fmt.Fprintf(h, "%q %o %d\n", rel, uint32(fi.Mode()), fi.Size())
			switch {
			case fi.Mode()&fs.ModeSymlink != 0:
				l, err := os.Readlink(host)
				if err != nil {
					return err
				}
				fmt.Fprintf(h, "-> %q\n", l)
			case fi.Mode().IsRegular():
				return hashFile(h, s.root, path.Join(s.rel, rel))
			}
			return nil
		})
		return hex.EncodeToString(h.Sum(nil)), err
	}
	if len(srcs) == 1 {
		sum, err := hashOne(srcs[0])
		if srcs[0].fi.IsDir() {
			return "dir:" + sum, err
		}
		return "file:" + sum, err
	}
	h := sha256.New()
	for _, s := range srcs {
		sum, err := hashOne(s)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%q %s\n", s.name, sum)
	}
	return "multi:" + hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(h hash.Hash, root, rel string) error {
	f, err := fsutil.OpenInRoot(root, rel, os.O_RDONLY|int(noFollow))
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("read %s: %w", rel, err)
	}
	return nil
}

// owner is a --chown identity.
type owner struct{ uid, gid int }

// parseChown resolves a --chown value (user[:group], names or numbers) against the image's
// /etc/passwd and /etc/group, opened inside rootfs. A user without group uses the same number
// as the group, as Docker.
func parseChown(rootfs, spec string) (*owner, error) {
	if spec == "" {
		return nil, nil
	}
	u, g, hasGroup := strings.Cut(spec, ":")
	uid, err := lookupID(rootfs, "/etc/passwd", u, true)
	if err != nil {
		return nil, err
	}
	gid := uid
	if hasGroup {
		if gid, err = lookupID(rootfs, "/etc/group", g, false); err != nil {
			return nil, err
		}
	}
	return &owner{uid: uid, gid: gid}, nil
}

func lookupID(rootfs, file, name string, isUser bool) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		if n < 0 {
			return 0, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid id %q", name))
		}
		return n, nil
	}
	f, err := fsutil.OpenInRoot(rootfs, file, os.O_RDONLY)
	if err != nil {
		return 0, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("unable to find %s %q: no %s in the image", map[bool]string{true: "user", false: "group"}[isUser], name, file))
	}
	defer f.Close()
	if isUser {
		us, err := user.ParsePasswdFilter(f, func(u user.User) bool { return u.Name == name })
		if err != nil || len(us) == 0 {
			return 0, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("unable to find user %s: no matching entries in passwd file", name))
		}
		return us[0].Uid, nil
	}
	gs, err := user.ParseGroupFilter(f, func(g user.Group) bool { return g.Name == name })
	if err != nil || len(gs) == 0 {
		return 0, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("unable to find group %s: no matching entries in group file", name))
	}
	return gs[0].Gid, nil
}

// parseChmod parses a --chmod octal mode.
func parseChmod(s string) (*fs.FileMode, error) {
	if s == "" {
		return nil, nil
	}
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid --chmod %q: only octal modes are supported", s))
	}
	m := fs.FileMode(n) & fs.ModePerm
	return &m, nil
}

// copyRequest is one COPY or ADD applied to a mounted root filesystem.
type copyRequest struct {
	srcs    []source
	dest    string // as written (expanded)
	workdir string
	chown   string
	chmod   *fs.FileMode
	add     bool // ADD: unpack local archives
}

// copyInto performs a COPY or ADD into rootfs with Docker's destination rules: a destination
// ending in "/" (or any destination of several sources) is a directory; a directory source
// copies its contents; a file copied onto an existing directory lands inside it. Everything is
// written through archive.Apply, confined to the resolved destination directory.
func copyInto(ctx context.Context, rootfs string, r copyRequest) error {
	own, err := parseChown(rootfs, r.chown)
	if err != nil {
		return err
	}
	dest := r.dest
	if !path.IsAbs(dest) {
		wd := r.workdir
		if wd == "" {
			wd = "/"
		}
		dest = path.Join(wd, dest) + map[bool]string{true: "/", false: ""}[strings.HasSuffix(r.dest, "/") || r.dest == "." || strings.HasSuffix(r.dest, "/.")]
	}
	destIsDir := strings.HasSuffix(dest, "/") || strings.HasSuffix(dest, "/.")
	if len(r.srcs) > 1 && !destIsDir {
		return errdefs.ErrInvalidArgument.WithMessage("When using COPY with more than one source file, the destination must be a directory and end with a /")
	}
	for _, s := range r.srcs {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case s.fi.IsDir():
			if err := applyTree(ctx, rootfs, dest, own, s, "", r.chmod); err != nil {
				return err
			}
		case r.add && s.fi.Mode().IsRegular():
			ok, err := unpackArchive(ctx, rootfs, dest, own, s)
			if err != nil {
				return err
			}
			if ok {
				continue
			}
			fallthrough
		default:
			dir, name := dest, s.name
			if !destIsDir && !isDirInRoot(rootfs, dest) {
				dir, name = path.Dir(path.Clean(dest)), path.Base(path.Clean(dest))
			}
			if err := applyTree(ctx, rootfs, dir, own, s, name, r.chmod); err != nil {
				return err
			}
		}
	}
	return nil
}

func isDirInRoot(rootfs, p string) bool {
	host, err := securejoin.SecureJoin(rootfs, p)
	if err != nil {
		return false
	}
	fi, err := os.Stat(host)
	return err == nil && fi.IsDir()
}

// mkdirInRoot creates dir inside rootfs (symlinks resolved inside rootfs) and returns its host
// path. Directories it creates belong to own (root when nil), as Docker's COPY.
func mkdirInRoot(rootfs, dir string, own *owner) (string, error) {
	host, err := securejoin.SecureJoin(rootfs, dir)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", dir, err)
	}
	rel, err := filepath.Rel(rootfs, host)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("resolve %s: outside the root filesystem", dir)
	}
	cur := rootfs
	for _, c := range strings.Split(rel, string(filepath.Separator)) {
		if c == "." || c == "" {
			continue
		}
		cur = filepath.Join(cur, c)
		fi, err := os.Lstat(cur)
		if err == nil {
			if !fi.IsDir() {
				return "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("cannot copy to %s: a path component is not a directory", dir))
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		if err := os.Mkdir(cur, 0o755); err != nil {
			return "", err
		}
		uid, gid := 0, 0
		if own != nil {
			uid, gid = own.uid, own.gid
		}
		if err := os.Lchown(cur, uid, gid); err != nil {
			return "", err
		}
	}
	return host, nil
}

// applyTree copies source s into dir of rootfs: a directory's contents, or a file as name.
func applyTree(ctx context.Context, rootfs, dir string, own *owner, s source, name string, chmod *fs.FileMode) error {
	host, err := mkdirInRoot(rootfs, dir, own)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := walkSource(s, func(rel, h string, fi fs.FileInfo) error {
			n := rel
			if !s.fi.IsDir() {
				n = name
			} else if rel == "" {
				return nil
			}
			return writeEntry(tw, h, n, fi, func(hdr *tar.Header) {
				hdr.Uid, hdr.Gid = 0, 0
				if own != nil {
					hdr.Uid, hdr.Gid = own.uid, own.gid
				}
				if chmod != nil && hdr.Typeflag != tar.TypeSymlink {
					hdr.Mode = hdr.Mode&^0o7777 | int64(*chmod)
				}
			})
		})
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	_, err = archive.Apply(ctx, host, pr, archive.ApplyOptions{})
	pr.CloseWithError(err)
	if err != nil {
		return fmt.Errorf("copy %s: %w", s.rel, err)
	}
	return nil
}

// unpackArchive extracts s into dest if it is a tar (plain, gzip, bzip2, xz or zstd), as ADD does.
// It reports false for any other file, which ADD then copies as is.
func unpackArchive(ctx context.Context, rootfs, dest string, own *owner, s source) (bool, error) {
	f, err := fsutil.OpenInRoot(s.root, s.rel, os.O_RDONLY|int(noFollow))
	if err != nil {
		return false, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(6)
	var r io.Reader = br
	switch {
	case len(head) >= 3 && string(head[:3]) == "BZh":
		r = bzip2.NewReader(br)
	case len(head) >= 6 && string(head) == "\xfd7zXZ\x00":
		xr, err := xz.NewReader(br)
		if err != nil {
			return false, nil
		}
		r = xr
	default:
		dr, _, err := archive.Decompress(br)
		if err != nil {
			return false, nil
		}
		defer dr.Close()
		r = dr
	}
	tr := bufio.NewReaderSize(r, 64<<10)
	th, _ := tr.Peek(512)
	if len(th) < 512 || !isTarHeader(th) {
		return false, nil
	}
	host, err := mkdirInRoot(rootfs, dest, own)
	if err != nil {
		return false, err
	}
	if _, err := archive.Apply(ctx, host, tr, archive.ApplyOptions{}); err != nil {
		return false, fmt.Errorf("ADD %s: unpack: %w", s.rel, err)
	}
	return true, nil
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
