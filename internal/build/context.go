package build

import (
	"archive/tar"
	"bufio"
	"bytes"
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
	"time"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/berth-dev/berth/internal/fsutil"
	"github.com/containerd/errdefs"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// PrepareContext unpacks a build context into dir (which must exist). The body is a tar
// (possibly gzip- or zstd-compressed), extracted confined to dir, or, as `docker build - <
// Dockerfile` sends, a bare Dockerfile, which is then written as dir/Dockerfile.
func PrepareContext(ctx context.Context, r io.Reader, dir string) error {
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(1024)
	if archive.DetectCompression(head) == archive.Uncompressed && !isTarHeader(head) {
		f, err := os.OpenFile(filepath.Join(dir, "Dockerfile"), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("write Dockerfile: %w", err)
		}
		_, err = io.Copy(f, io.LimitReader(br, maxDockerfileSize+1))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	if _, err := archive.Apply(ctx, dir, br, archive.ApplyOptions{}); err != nil {
		return fmt.Errorf("unpack build context: %w", err)
	}
	return nil
}

// isTarHeader reports whether b starts with a tar header (ustar magic, or an old-style header
// with a valid checksum).
func isTarHeader(b []byte) bool {
	if len(b) < 512 {
		return len(b) == 0
	}
	if bytes.HasPrefix(b[257:], []byte("ustar")) {
		return true
	}
	_, err := tar.NewReader(bytes.NewReader(b[:512])).Next()
	return err == nil || errors.Is(err, io.ErrUnexpectedEOF)
}

// ReadDockerignore returns the patterns of dir/.dockerignore (none if it does not exist).
func ReadDockerignore(dir string) ([]string, error) {
	f, err := os.Open(filepath.Join(dir, ".dockerignore"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("read .dockerignore: %v", err))
	}
	return p, nil
}

// ApplyDockerignore deletes from the unpacked context dir what .dockerignore excludes, so that
// no instruction can see it, whatever the client sent.
func ApplyDockerignore(dir string, patterns []string) error {
	if len(patterns) == 0 {
		return nil
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid .dockerignore: %v", err))
	}
	return filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		m, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		if !m {
			return nil
		}
		if de.IsDir() {
			if pm.Exclusions() {
				return nil // a later !pattern may re-include something below
			}
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			return filepath.SkipDir
		}
		return os.Remove(p)
	})
}

// WriteContext writes dir as a build context tar, leaving out what the .dockerignore patterns
// exclude, except the files named in keep (the Dockerfile and .dockerignore, which the daemon
// needs; it drops them itself if excluded). Symlinks are sent as links, never followed.
// extra files (a Dockerfile read from stdin) are appended as regular files.
func WriteContext(ctx context.Context, w io.Writer, dir string, patterns []string, extra map[string][]byte, keep ...string) error {
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return fmt.Errorf("invalid .dockerignore: %w", err)
	}
	tw := tar.NewWriter(w)
	err = filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if !slices.Contains(keep, rel) {
			m, err := pm.MatchesOrParentMatches(rel)
			if err != nil {
				return err
			}
			if m {
				if de.IsDir() && !pm.Exclusions() {
					return filepath.SkipDir
				}
				if !de.IsDir() {
					return nil
				}
			}
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		return writeEntry(tw, p, rel, fi, nil)
	})
	if err != nil {
		return err
	}
	for _, name := range sortedKeys(extra) {
		b := extra[name]
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: time.Now()}); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	return tw.Close()
}

// writeEntry writes one file of the host (already resolved by the caller) as name. owner, when
// not nil, replaces the file's uid/gid.
func writeEntry(tw *tar.Writer, host, name string, fi fs.FileInfo, hdrFix func(*tar.Header)) error {
	var link string
	if fi.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(host); err != nil {
			return err
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	hdr.Name = name
	if fi.IsDir() && !strings.HasSuffix(hdr.Name, "/") {
		hdr.Name += "/"
	}
	hdr.Uname, hdr.Gname = "", ""
	hdr.Format = tar.FormatPAX
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	if hdrFix != nil {
		hdrFix(hdr)
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := os.Open(host)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(tw, io.LimitReader(f, hdr.Size)); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	return nil
}

// cleanRel makes p a clean path relative to a root ("" for the root itself).
func cleanRel(p string) string {
	p = path.Clean("/" + filepath.ToSlash(p))
	return strings.TrimPrefix(p, "/")
}

// noFollow refuses a symlink as the last component of an opened source: sources are resolved
// beforehand, so a link there means the tree changed under us.
const noFollow = syscall.O_NOFOLLOW

// openContextFile opens a file of the context (the Dockerfile) without leaving it.
func openContextFile(dir, name string) (*os.File, error) {
	f, err := fsutil.OpenInRoot(dir, cleanRel(name), os.O_RDONLY)
	if err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("Cannot locate specified Dockerfile: %s", name))
	}
	return f, nil
}
