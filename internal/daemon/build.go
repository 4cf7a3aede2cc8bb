package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/api"
	"github.com/berth-dev/berth/internal/archive"
	"github.com/berth-dev/berth/internal/build"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/snapshot"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/pkg/stdcopy"
	mcontainer "github.com/moby/moby/api/types/container"
	"golang.org/x/sys/unix"
)

// Build runs a classic Dockerfile build (POST /build). The context is unpacked into a private
// directory under the data root and removed afterwards; each step commits an image; the step
// images stay as dangling images (as Docker's), and the cache (bucket "build-cache") maps each
// step's key to its image.
func (d *Daemon) Build(ctx context.Context, opts api.BuildOptions, body io.Reader, out io.Writer) (string, error) {
	base := filepath.Join(d.cfg.Root, "build")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", fmt.Errorf("create build directory: %w", err)
	}
	b := &buildBackend{d: d, stamp: d.start.UTC().Format(time.RFC3339Nano)}
	b.cleanupStale(ctx, base)
	dir, err := os.MkdirTemp(base, "ctx-")
	if err != nil {
		return "", fmt.Errorf("create build context directory: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := build.PrepareContext(ctx, body, dir); err != nil {
		return "", invalidIfArchive(err)
	}
	cache, err := build.NewBoltCache(d.db)
	if err != nil {
		return "", err
	}
	res, err := build.New(b, cache).Build(ctx, build.Options{
		ContextDir:  dir,
		Dockerfile:  opts.Dockerfile,
		Tags:        opts.Tags,
		Target:      opts.Target,
		NoCache:     opts.NoCache,
		BuildArgs:   opts.BuildArgs,
		Labels:      opts.Labels,
		Quiet:       opts.Quiet,
		NetworkMode: opts.NetworkMode,
		Out:         out,
	})
	if err != nil {
		return "", err
	}
	return res.ID, nil
}

// buildBackend is the daemon as the builder's Backend.
type buildBackend struct {
	d *Daemon
	// stamp (the daemon's start time) labels the snapshots and containers of builds, so that
	// those of an earlier daemon that died mid-build can be told apart and removed.
	stamp string
}

// cleanupStale removes what builds of an earlier daemon process left behind: build snapshots,
// RUN containers, mount points and context directories. Builds of this process are kept.
func (b *buildBackend) cleanupStale(ctx context.Context, base string) {
	d := b.d
	var stale []string
	_ = d.snap.Walk(ctx, func(_ context.Context, info snapshot.Info) error {
		if v, ok := info.Labels[buildLabel]; ok && v != b.stamp && info.Kind != snapshot.Committed {
			stale = append(stale, info.Name)
		}
		return nil
	})
	for _, c := range d.ctrs.all() {
		rec := c.snapshotOf()
		if v, ok := rec.Config.Labels[buildLabel]; ok && v != b.stamp {
			_ = d.ContainerRemove(ctx, rec.ID, true, true)
		}
	}
	ents, _ := os.ReadDir(base)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.ModTime().Before(d.start) {
			p := filepath.Join(base, e.Name())
			_ = snapshot.UnmountAll(p)
			_ = os.RemoveAll(p)
		}
	}
	for _, k := range stale {
		if err := d.snap.Remove(ctx, k); err != nil {
			d.log.Warn("build: remove stale snapshot", "key", k, "err", err)
		}
	}
}

// buildLabel marks build snapshots and RUN containers with the daemon's start stamp.
const buildLabel = "berth.build"

func (b *buildBackend) Image(ctx context.Context, ref string) (build.ImageInfo, error) {
	img, err := b.d.images.Resolve(ctx, ref)
	if err != nil {
		return build.ImageInfo{}, err
	}
	return build.ImageInfo{ID: img.ID, Image: img.Config}, nil
}

func (b *buildBackend) Commit(ctx context.Context, parent string, img dockerspec.DockerOCIImage, createdBy string) (string, error) {
	return b.d.images.BuildCommit(ctx, image.BuildCommitOptions{Parent: parent, Image: img, CreatedBy: createdBy})
}

func (b *buildBackend) Tag(ctx context.Context, id, ref string) error {
	return b.d.images.ImageTag(ctx, id, ref, "")
}

// chainOf returns the snapshot name of an image's top layer ("" for none).
func (b *buildBackend) chainOf(ctx context.Context, id string) (string, error) {
	if id == "" {
		return "", nil
	}
	img, err := b.d.images.Resolve(ctx, id)
	if err != nil {
		return "", err
	}
	return img.ChainID, nil
}

// mountSnapshot prepares (or views) a snapshot of parent and mounts it on a private directory.
// The returned cleanup unmounts it and removes the snapshot.
func (b *buildBackend) mountSnapshot(ctx context.Context, parent string, readOnly bool) (key, mnt string, cleanup func(), err error) {
	chain, err := b.chainOf(ctx, parent)
	if err != nil {
		return "", "", nil, err
	}
	key = "build-" + newID()
	labels := map[string]string{buildLabel: b.stamp}
	var mounts []snapshot.Mount
	if readOnly {
		mounts, err = b.d.snap.View(ctx, key, chain, labels)
	} else {
		mounts, err = b.d.snap.Prepare(ctx, key, chain, labels)
	}
	if err != nil {
		return "", "", nil, fmt.Errorf("prepare build filesystem: %w", err)
	}
	removeSnap := func() { _ = b.d.snap.Remove(context.WithoutCancel(ctx), key) }
	mnt, err = os.MkdirTemp(filepath.Join(b.d.cfg.Root, "build"), "mnt-")
	if err != nil {
		removeSnap()
		return "", "", nil, err
	}
	if err := snapshot.MountAll(mounts, mnt); err != nil {
		_ = os.Remove(mnt)
		removeSnap()
		return "", "", nil, fmt.Errorf("mount build filesystem: %w", err)
	}
	return key, mnt, func() {
		_ = snapshot.UnmountAll(mnt)
		_ = os.Remove(mnt)
		removeSnap()
	}, nil
}

func (b *buildBackend) View(ctx context.Context, imageID string, fn func(rootfs string) error) error {
	chain, err := b.chainOf(ctx, imageID)
	if err != nil {
		return err
	}
	if chain == "" {
		empty, err := os.MkdirTemp(filepath.Join(b.d.cfg.Root, "build"), "empty-")
		if err != nil {
			return err
		}
		defer os.Remove(empty)
		return fn(empty)
	}
	_, mnt, cleanup, err := b.mountSnapshot(ctx, imageID, true)
	if err != nil {
		return err
	}
	defer cleanup()
	return fn(mnt)
}

func (b *buildBackend) Mutate(ctx context.Context, parent string, img dockerspec.DockerOCIImage, createdBy string, fn func(rootfs string) error) (string, error) {
	key, mnt, cleanup, err := b.mountSnapshot(ctx, parent, false)
	if err != nil {
		return "", err
	}
	defer cleanup()
	if err := fn(mnt); err != nil {
		return "", err
	}
	if err := snapshot.UnmountAll(mnt); err != nil {
		return "", fmt.Errorf("unmount build filesystem: %w", err)
	}
	return b.commitUpper(ctx, key, parent, img, createdBy)
}

// commitUpper records the changes in a snapshot's upper directory as a new image's layer.
func (b *buildBackend) commitUpper(ctx context.Context, key, parent string, img dockerspec.DockerOCIImage, createdBy string) (string, error) {
	upper, err := b.d.snap.UpperDir(ctx, key)
	if err != nil {
		return "", err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(archive.WriteDiff(ctx, pw, upper)) }()
	id, err := b.d.images.BuildCommit(ctx, image.BuildCommitOptions{Parent: parent, Layer: pr, Image: img, CreatedBy: createdBy})
	pr.CloseWithError(errors.New("commit finished"))
	return id, err
}

func (b *buildBackend) Run(ctx context.Context, req build.RunRequest) (string, error) {
	d := b.d
	cfg := &mcontainer.Config{
		Image:      req.Parent,
		Entrypoint: req.Args,
		Env:        req.Env,
		User:       req.User,
		WorkingDir: req.WorkingDir,
		Labels:     map[string]string{buildLabel: b.stamp},
	}
	hc := &mcontainer.HostConfig{NetworkMode: mcontainer.NetworkMode(req.NetworkMode)}
	cr, err := d.ContainerCreate(ctx, "", cfg, hc, nil)
	if err != nil {
		return "", err
	}
	id := cr.ID
	if req.Container != nil {
		req.Container(id, false)
	}
	defer func() {
		_ = d.ContainerRemove(context.WithoutCancel(ctx), id, true, true)
		if req.Container != nil {
			req.Container(id, true)
		}
	}()
	wait, err := d.ContainerWait(ctx, id, mcontainer.WaitConditionNextExit)
	if err != nil {
		return "", err
	}
	if err := d.ContainerStart(ctx, id); err != nil {
		return "", err
	}
	logs, tty, err := d.ContainerLogs(ctx, id, api.LogsOptions{Stdout: true, Stderr: true, Follow: true})
	if err != nil {
		return "", err
	}
	out := req.Output
	if out == nil {
		out = io.Discard
	}
	if tty {
		_, err = io.Copy(out, logs)
	} else {
		_, err = stdcopy.StdCopy(out, out, logs)
	}
	logs.Close()
	if err != nil && ctx.Err() == nil {
		d.log.Warn("build: stream RUN output", "container", id, "err", err)
	}
	var res mcontainer.WaitResponse
	select {
	case res = <-wait:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if res.Error != nil && res.Error.Message != "" {
		return "", fmt.Errorf("RUN: %s", res.Error.Message)
	}
	if res.StatusCode != 0 {
		return "", &build.ExitError{Code: int(res.StatusCode)}
	}
	if err := b.pruneMountTargets(ctx, snapKey(id)); err != nil {
		return "", err
	}
	return b.commitUpper(ctx, snapKey(id), req.Parent, req.Image, req.CreatedBy)
}

// pruneMountTargets drops from a RUN container's upper directory the empty files the runtime
// created as targets of the /etc/hostname, /etc/hosts and /etc/resolv.conf bind mounts (and
// /etc itself if only they put it there): Docker keeps them in an init layer that no image sees.
// What RUN wrote to them went to the daemon's files, not to the layer, as in Docker.
func (b *buildBackend) pruneMountTargets(ctx context.Context, key string) error {
	upper, err := b.d.snap.UpperDir(ctx, key)
	if err != nil {
		return err
	}
	for _, f := range []string{"hostname", "hosts", "resolv.conf"} {
		p := filepath.Join(upper, "etc", f)
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("prune mount target: %w", err)
			}
		}
	}
	etc := filepath.Join(upper, "etc")
	ents, err := os.ReadDir(etc)
	if err != nil || len(ents) > 0 {
		return nil
	}
	if _, err := unix.Lgetxattr(etc, "trusted.overlay.opaque", make([]byte, 8)); err == nil {
		return nil
	}
	mounts, err := b.d.snap.Mounts(ctx, key)
	if err != nil {
		return err
	}
	for _, m := range mounts {
		for _, o := range m.Options {
			v, ok := strings.CutPrefix(o, "lowerdir=")
			if !ok {
				continue
			}
			for _, l := range strings.Split(v, ":") {
				if fi, err := os.Stat(filepath.Join(l, "etc")); err == nil && fi.IsDir() {
					// Only a copy-up of the image's own /etc: dropping it changes nothing.
					return os.Remove(etc)
				}
			}
		}
	}
	return nil
}
