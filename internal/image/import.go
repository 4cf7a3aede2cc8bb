package image

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/distribution/reference"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
)

// parseTagTarget parses a name to tag an image with; digests are refused as Docker does.
func parseTagTarget(s string) (reference.NamedTagged, error) {
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return nil, errInvalid("%s", err.Error())
	}
	return checkTagTarget(n)
}

func checkTagTarget(n reference.Named) (reference.NamedTagged, error) {
	if _, ok := n.(reference.Canonical); ok {
		return nil, errInvalid("refusing to create a tag with a digest reference")
	}
	if reference.FamiliarName(n) == string(digest.Canonical) {
		return nil, errInvalid("refusing to create an ambiguous tag using digest algorithm as name")
	}
	t, ok := reference.TagNameOnly(n).(reference.NamedTagged)
	if !ok {
		return nil, errInvalid("invalid reference format: %s", n)
	}
	return t, nil
}

// ImageImport creates a one-layer image from a root filesystem tarball (plain, gzip or zstd).
// The layer blob is the uncompressed tar, so its digest is the diffID; it is written to the
// content store and unpacked in the same pass.
func (s *Service) ImageImport(ctx context.Context, src io.Reader, ref string, changes []string, message string, progress Progress) (string, error) {
	var tag reference.NamedTagged
	if ref != "" {
		var err error
		if tag, err = parseTagTarget(ref); err != nil {
			return "", err
		}
	}
	var ic dockerspec.DockerOCIImageConfig
	if err := applyChanges(&ic, changes); err != nil {
		return "", err
	}
	if message == "" {
		message = "Imported from -"
	}
	ls := s.newLease()
	defer ls.release(context.WithoutCancel(ctx))

	layer, err := s.importLayer(ctx, src, ls, progress)
	if err != nil {
		return "", err
	}
	created := time.Now().UTC()
	cfg := imageConfig{Comment: message}
	cfg.Created = &created
	cfg.Architecture = runtime.GOARCH
	cfg.OS = "linux"
	cfg.Config = ic
	cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer.DiffID}}
	cfg.History = []ocispec.History{{Created: &created, Comment: message}}
	cb, err := json.Marshal(cfg)
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
		Layers:  []layerRecord{layer},
		Created: created,
		Added:   created,
		Labels:  ic.Labels,
		Size:    layer.Size,
	}
	if err := s.recordImage(rec, tag, ls); err != nil {
		return "", err
	}
	s.publish(events.ActionImport, id.String(), eventAttrs(ic.Labels, id.String()))
	return id.String(), nil
}

// recordImage finishes a new image whose config blob is stored: it writes the manifest, then
// records the image and, when tag is set, its name in one transaction (so a name never points at
// a missing image), and announces the tag.
func (s *Service) recordImage(rec *imageRecord, tag reference.NamedTagged, ls *lease) error {
	if tag != nil {
		rec.LastTagTime = rec.Created
	}
	var err error
	if rec.Manifest, err = s.writeManifest(rec, ls); err != nil {
		return err
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		if err := putImage(tx, rec); err != nil {
			return err
		}
		if tag != nil {
			return putRef(tx, tag.String(), refRecord{ID: rec.ID, Created: rec.Created})
		}
		return nil
	}); err != nil {
		return fmt.Errorf("record image %s: %w", rec.ID, err)
	}
	if tag != nil {
		s.publish(events.ActionTag, rec.ID.String(), eventAttrs(rec.Labels, reference.FamiliarString(tag)))
	}
	return nil
}

// importLayer decompresses src and stores it as a first layer: one pass writes the blob and
// unpacks the snapshot, committed under the layer's chainID (= its diffID).
func (s *Service) importLayer(ctx context.Context, src io.Reader, ls *lease, progress Progress) (layerRecord, error) {
	var in io.Reader = bufio.NewReaderSize(src, copyBufSize)
	if progress != nil {
		in = &progressReader{r: in, id: "", status: "Importing", fn: progress}
	}
	dr, _, err := archive.Decompress(in)
	if err != nil {
		return layerRecord{}, errInvalid("import: %v", err)
	}
	defer dr.Close()
	l, err := s.commitLayer(ctx, nil, dr, ls)
	if err != nil {
		return l, fmt.Errorf("import: %w", err)
	}
	if progress != nil {
		progress(jsonstream.Message{Status: "Imported", Progress: &jsonstream.Progress{Current: l.TarSize, Total: l.TarSize}})
	}
	return l, nil
}
