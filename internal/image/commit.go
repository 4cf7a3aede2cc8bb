package image

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/berth-dev/berth/internal/snapshot"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// CommitOptions describe a new image made from a container's changes.
type CommitOptions struct {
	// Parent is the ID of the image the container runs.
	Parent string
	// Layer is the container's diff as an uncompressed OCI layer tar (archive.WriteDiff).
	Layer io.Reader
	// Config is the new image's runtime config (the container's), before Changes.
	Config dockerspec.DockerOCIImageConfig
	// Changes are Dockerfile-style instructions (CMD, ENV, ...) applied to Config.
	Changes []string
	Author  string
	Comment string
	// CreatedBy is the history entry's command (the container's command, as Docker).
	CreatedBy string
	// Ref, when not empty, names the new image (repo[:tag]).
	Ref string
}

// Commit creates an image from a parent image and one more layer. The layer is stored as an
// uncompressed tar blob (so its digest is its diffID) and unpacked into a snapshot named by its
// chainID on top of the parent's, like every other layer, so that the image runs at once.
func (s *Service) Commit(ctx context.Context, o CommitOptions) (string, error) {
	var tag reference.NamedTagged
	if o.Ref != "" {
		var err error
		if tag, err = parseTagTarget(o.Ref); err != nil {
			return "", err
		}
	}
	cfg := o.Config
	if err := applyChanges(&cfg, o.Changes); err != nil {
		return "", err
	}
	ls := s.newLease()
	defer ls.release(context.WithoutCancel(ctx))

	parent, _, pcfg, err := s.lookup(o.Parent)
	if err != nil {
		return "", err
	}
	// Lease the parent's layers: a concurrent `rmi` of the parent must not collect them while
	// the new image, which shares them, is not yet recorded.
	for _, l := range parent.Layers {
		ls.blob(l.Blob.Digest)
		ls.snap(l.ChainID.String())
	}
	layer, err := s.commitLayer(ctx, parent.Layers, o.Layer, ls)
	if err != nil {
		return "", fmt.Errorf("commit: %w", err)
	}
	layers := append(slices.Clone(parent.Layers), layer)
	diffIDs := make([]digest.Digest, 0, len(layers))
	for _, l := range layers {
		diffIDs = append(diffIDs, l.DiffID)
	}

	created := time.Now().UTC()
	nc := imageConfig{Comment: o.Comment}
	if pcfg != nil {
		nc.DockerOCIImage = pcfg.DockerOCIImage
	}
	nc.Created = &created
	nc.Author = o.Author
	nc.Config = cfg
	nc.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}
	nc.History = append(slices.Clone(nc.History), ocispec.History{
		Created: &created, Author: o.Author, CreatedBy: o.CreatedBy, Comment: o.Comment,
	})
	return s.storeImage(&nc, layers, created, tag, ls)
}

// storeImage writes a new image's config (OS defaulting to linux) to the content store and
// records the image over layers, tagged with tag if set; it returns the image ID. build and
// commit both end here.
func (s *Service) storeImage(nc *imageConfig, layers []layerRecord, created time.Time, tag reference.NamedTagged, ls *lease) (string, error) {
	if nc.OS == "" {
		nc.OS = "linux"
	}
	cb, err := json.Marshal(nc)
	if err != nil {
		return "", fmt.Errorf("encode image config: %w", err)
	}
	id := digest.FromBytes(cb)
	if _, _, err := s.content.write(bytes.NewReader(cb), id, ls.blob); err != nil {
		return "", err
	}
	rec := &imageRecord{
		ID:      id,
		Config:  ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: id, Size: int64(len(cb))},
		Layers:  layers,
		Created: created,
		Added:   created,
		Labels:  nc.Config.Labels,
	}
	for _, l := range layers {
		rec.Size += l.Size
	}
	if err := s.recordImage(rec, tag, ls); err != nil {
		return "", err
	}
	return id.String(), nil
}

// commitLayer stores a layer tar on top of parents in one pass: the stream goes into a new blob
// and, at the same time, is applied to a snapshot prepared on the parents' top layer (through
// the mounted overlay, as unpack does for later layers), which is then committed under the new
// layer's chainID. Nothing is read twice.
func (s *Service) commitLayer(ctx context.Context, parents []layerRecord, src io.Reader, ls *lease) (_ layerRecord, retErr error) {
	var l layerRecord
	parent := ""
	if len(parents) > 0 {
		parent = parents[len(parents)-1].ChainID.String()
	}
	key := unpackPrefix + randomHex(8)
	s.pin(snapKey(key))
	defer s.unpin(snapKey(key))
	mounts, err := s.snap.Prepare(ctx, key, parent, nil)
	if err != nil {
		return l, fmt.Errorf("prepare layer snapshot: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			if err := s.snap.Remove(context.WithoutCancel(ctx), key); err != nil && !errdefs.IsNotFound(err) {
				s.log.Warn("remove failed commit snapshot", "key", key, "err", err)
			}
		}
	}()
	dir, overlayForm := "", true
	if parent == "" {
		if dir, err = s.snap.UpperDir(ctx, key); err != nil {
			return l, fmt.Errorf("snapshot %s: %w", key, err)
		}
	} else {
		mp, err := os.MkdirTemp(s.content.ingest, unpackMountPrefix)
		if err != nil {
			return l, fmt.Errorf("commit mount point: %w", err)
		}
		defer os.Remove(mp)
		if err := snapshot.MountAll(mounts, mp); err != nil {
			return l, fmt.Errorf("mount layer snapshot: %w", err)
		}
		defer func() {
			if err := snapshot.UnmountAll(mp); err != nil && retErr == nil {
				retErr = fmt.Errorf("unmount layer snapshot: %w", err)
			}
		}()
		dir, overlayForm = mp, false
	}
	bw, err := s.content.writer()
	if err != nil {
		return l, err
	}
	defer bw.close()
	tee := io.TeeReader(bufio.NewReaderSize(src, copyBufSize), bw)
	ar, err := archive.Apply(ctx, dir, tee, archive.ApplyOptions{Overlay: overlayForm})
	if err != nil {
		return l, fmt.Errorf("apply layer: %w", err)
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return l, fmt.Errorf("read layer: %w", err)
	}
	dg, n, err := bw.commit("", ls.blob)
	if err != nil {
		return l, err
	}
	if ar.DiffID != dg {
		return l, fmt.Errorf("layer digest %s differs from the applied stream's %s", dg, ar.DiffID)
	}
	diffIDs := make([]digest.Digest, 0, len(parents)+1)
	for _, p := range parents {
		diffIDs = append(diffIDs, p.DiffID)
	}
	chain := chainIDs(append(diffIDs, dg))[len(diffIDs)]
	ls.snap(chain.String())
	labels := map[string]string{
		labelLayer:   dg.String(),
		labelTarSize: strconv.FormatInt(n, 10),
		labelSize:    strconv.FormatInt(ar.Size, 10),
	}
	if err := s.snap.Commit(ctx, chain.String(), key, labels); err != nil {
		if !errdefs.IsAlreadyExists(err) {
			return l, fmt.Errorf("commit layer snapshot %s: %w", chain, err)
		}
		// The same changes were committed before: that layer is already unpacked.
	} else {
		committed = true
	}
	return layerRecord{
		Blob:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: dg, Size: n},
		DiffID:  dg,
		ChainID: chain,
		TarSize: n,
		Size:    ar.Size,
	}, nil
}
