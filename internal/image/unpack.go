package image

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/berth-dev/berth/internal/snapshot"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/opencontainers/go-digest"
)

// unpackMountPrefix names the mount points of layers being unpacked, under ingest/.
const unpackMountPrefix = "mnt-"

// chainIDs computes the OCI image-spec ChainIDs of a layer stack:
// chainID(0) = diffID(0), chainID(n) = sha256(chainID(n-1) + " " + diffID(n)).
func chainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = digest.FromString(out[i-1].String() + " " + d.String())
	}
	return out
}

// layerSizes is what unpacking a layer learns about it.
type layerSizes struct {
	tarSize int64 // uncompressed tar bytes
	size    int64 // unpacked size reported by the applier
}

// unpack makes sure every layer of an image exists as a committed snapshot named by its
// chainID, unpacking the missing ones in chain order, and fills in their sizes. The caller must
// hold leases on the layers' blobs and chainIDs.
func (s *Service) unpack(ctx context.Context, layers []layerRecord, progress Progress) error {
	for i := range layers {
		parent := ""
		if i > 0 {
			parent = layers[i-1].ChainID.String()
		}
		l := layers[i]
		var (
			v   any
			err error
		)
		for {
			// Concurrent loads of the same layer unpack it once; the others wait and share the result.
			v, err, _ = s.unpacks.Do(l.ChainID.String(), func() (any, error) {
				return s.unpackLayer(ctx, l, parent, progress)
			})
			// The shared call ran with another caller's context; if only that one was
			// cancelled, try again with ours.
			if err != nil && errors.Is(err, context.Canceled) && ctx.Err() == nil {
				continue
			}
			break
		}
		if err != nil {
			return err
		}
		sz := v.(layerSizes)
		layers[i].TarSize, layers[i].Size = sz.tarSize, sz.size
	}
	return nil
}

func sizesFromLabels(labels map[string]string) layerSizes {
	t, _ := strconv.ParseInt(labels[labelTarSize], 10, 64)
	n, _ := strconv.ParseInt(labels[labelSize], 10, 64)
	return layerSizes{tarSize: t, size: n}
}

func (s *Service) unpackLayer(ctx context.Context, l layerRecord, parent string, progress Progress) (res layerSizes, retErr error) {
	chain := l.ChainID.String()
	if info, err := s.snap.Stat(ctx, chain); err == nil {
		return sizesFromLabels(info.Labels), nil
	} else if !errdefs.IsNotFound(err) {
		return res, fmt.Errorf("stat layer snapshot %s: %w", chain, err)
	}
	key := unpackPrefix + randomHex(8)
	s.pin(snapKey(key))
	defer s.unpin(snapKey(key))
	mounts, err := s.snap.Prepare(ctx, key, parent, nil)
	if err != nil {
		return res, fmt.Errorf("prepare snapshot for layer %s: %w", l.DiffID, err)
	}
	committed := false
	defer func() {
		if !committed {
			if err := s.snap.Remove(context.WithoutCancel(ctx), key); err != nil && !errdefs.IsNotFound(err) {
				s.log.Warn("remove failed unpack snapshot", "key", key, "err", err)
			}
		}
	}()
	// The first layer goes straight into the snapshot's directory. Later layers are applied
	// through the mounted overlay, so that their paths resolve through the layers below: a
	// symlink from an earlier layer (/bin -> usr/bin) must be followed, not shadowed by a new
	// directory in the upper layer. Deletions then become the kernel's own whiteouts.
	var dir string
	overlayForm := true
	if parent == "" {
		if dir, err = s.snap.UpperDir(ctx, key); err != nil {
			return res, fmt.Errorf("snapshot %s: %w", key, err)
		}
	} else {
		mp, err := os.MkdirTemp(s.content.ingest, unpackMountPrefix)
		if err != nil {
			return res, fmt.Errorf("unpack mount point: %w", err)
		}
		defer os.Remove(mp)
		if err := snapshot.MountAll(mounts, mp); err != nil {
			return res, fmt.Errorf("mount layer %s for unpacking: %w", l.DiffID, err)
		}
		defer func() {
			if err := snapshot.UnmountAll(mp); err != nil && retErr == nil {
				retErr = fmt.Errorf("unmount layer %s after unpacking: %w", l.DiffID, err)
			}
		}()
		dir, overlayForm = mp, false
	}
	f, err := s.content.open(l.Blob.Digest)
	if err != nil {
		return res, err
	}
	defer f.Close()
	var src io.Reader = bufio.NewReaderSize(f, copyBufSize)
	if progress != nil {
		src = &progressReader{r: src, total: l.Blob.Size, id: shortID(l.DiffID), status: "Loading layer", fn: progress}
	}
	dr, _, err := archive.Decompress(src)
	if err != nil {
		return res, errInvalid("layer %s: %v", l.Blob.Digest, err)
	}
	defer dr.Close()
	// Apply hashes the whole uncompressed stream (padding after the tar end included) while it
	// extracts, so the diffID check costs no extra pass; we only count the bytes.
	cr := &countingReader{r: dr}
	ar, err := archive.Apply(ctx, dir, cr, archive.ApplyOptions{Overlay: overlayForm})
	if err != nil {
		return res, fmt.Errorf("apply layer %s: %w", l.DiffID, err)
	}
	if got := ar.DiffID; got != l.DiffID {
		return res, errInvalid("layer %s: content has diff ID %s but the image config says %s", l.Blob.Digest, got, l.DiffID)
	}
	res = layerSizes{tarSize: cr.n, size: ar.Size}
	labels := map[string]string{
		labelLayer:   l.DiffID.String(),
		labelTarSize: strconv.FormatInt(res.tarSize, 10),
		labelSize:    strconv.FormatInt(res.size, 10),
	}
	if err := s.snap.Commit(ctx, chain, key, labels); err != nil {
		if !errdefs.IsAlreadyExists(err) {
			return res, fmt.Errorf("commit layer snapshot %s: %w", chain, err)
		}
		// Someone else (another process or an import) committed it meanwhile; use theirs.
		return res, nil
	}
	committed = true
	if progress != nil {
		progress(jsonstream.Message{Status: "Loading layer", ID: shortID(l.DiffID),
			Progress: &jsonstream.Progress{Current: l.Blob.Size, Total: l.Blob.Size}})
	}
	return res, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// progressReader reports bytes read as Docker-style progress messages, at most every 1 MiB.
type progressReader struct {
	r       io.Reader
	n, last int64
	total   int64
	id      string
	status  string
	fn      Progress
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.n-p.last >= 1<<20 {
		p.last = p.n
		p.fn(jsonstream.Message{Status: p.status, ID: p.id,
			Progress: &jsonstream.Progress{Current: p.n, Total: p.total}})
	}
	return n, err
}
