package image

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BuildCommitOptions describe one step of a Dockerfile build: a new image on a parent (or on
// nothing, for FROM scratch) with at most one more layer.
type BuildCommitOptions struct {
	// Parent is the ID of the previous step's image; empty for scratch.
	Parent string
	// Layer is an uncompressed OCI layer tar, or nil for a metadata-only step (the history
	// entry is then marked empty_layer, as Docker's classic builder does).
	Layer io.Reader
	// Image is the new image config as the builder computed it (run config, history so far,
	// platform). RootFS is recomputed here; History gets one more entry.
	Image dockerspec.DockerOCIImage
	// CreatedBy is the new history entry's command ("/bin/sh -c #(nop)  CMD [...]", ...).
	CreatedBy string
}

// BuildCommit records an image for one build step and returns its ID. The image is not named:
// the builder tags only its result, and the intermediate images stay dangling, as Docker's.
func (s *Service) BuildCommit(ctx context.Context, o BuildCommitOptions) (string, error) {
	ls := s.newLease()
	defer ls.release(context.WithoutCancel(ctx))
	var layers []layerRecord
	if o.Parent != "" {
		parent, _, _, err := s.lookup(o.Parent)
		if err != nil {
			return "", err
		}
		for _, l := range parent.Layers {
			ls.blob(l.Blob.Digest)
			ls.snap(l.ChainID.String())
		}
		layers = slices.Clone(parent.Layers)
	}
	if o.Layer != nil {
		bw, err := s.content.writer()
		if err != nil {
			return "", err
		}
		defer bw.close()
		if _, err := io.Copy(bw, bufio.NewReaderSize(o.Layer, copyBufSize)); err != nil {
			return "", fmt.Errorf("build: write layer: %w", err)
		}
		dg, n, err := bw.commit("", ls.blob)
		if err != nil {
			return "", err
		}
		diffIDs := make([]digest.Digest, 0, len(layers)+1)
		for _, l := range layers {
			diffIDs = append(diffIDs, l.DiffID)
		}
		diffIDs = append(diffIDs, dg)
		chain := chainIDs(diffIDs)[len(diffIDs)-1]
		ls.snap(chain.String())
		layers = append(layers, layerRecord{
			Blob:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: dg, Size: n},
			DiffID:  dg,
			ChainID: chain,
			TarSize: n,
		})
		if err := s.unpack(ctx, layers, nil); err != nil {
			return "", fmt.Errorf("build: %w", err)
		}
	}
	created := time.Now().UTC()
	nc := imageConfig{DockerOCIImage: o.Image}
	nc.Created = &created
	nc.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{}}
	for _, l := range layers {
		nc.RootFS.DiffIDs = append(nc.RootFS.DiffIDs, l.DiffID)
	}
	nc.History = append(slices.Clone(nc.History), ocispec.History{
		Created: &created, CreatedBy: o.CreatedBy, EmptyLayer: o.Layer == nil,
	})
	return s.storeImage(&nc, layers, created, nil, ls)
}
