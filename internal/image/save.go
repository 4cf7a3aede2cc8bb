package image

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"slices"
	"time"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/events"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
)

// ociLayoutContent is the oci-layout file exactly as Docker writes it.
const ociLayoutContent = `{"imageLayoutVersion": "` + ocispec.ImageLayoutVersion + `"}`

// saveImage is one image of a save, with the tags requested for it.
type saveImage struct {
	rec  *imageRecord
	cfg  *imageConfig
	tags []reference.NamedTagged
}

// saveBlob is one file under blobs/sha256/ of the archive.
type saveBlob struct {
	dg    digest.Digest
	size  int64
	mtime time.Time
	data  []byte       // small blobs written from memory (manifests)
	layer *layerRecord // layers are written as uncompressed tars
	store bool         // copied verbatim from the content store (configs)
}

// parseSaveNames resolves names as Docker's `docker save`: a name without a tag means every tag
// of that repository; IDs and digests select an image without tags.
func parseSaveNames(tx *bbolt.Tx, names []string) ([]*saveImage, error) {
	var out []*saveImage
	byID := map[digest.Digest]*saveImage{}
	add := func(rec *imageRecord, tag reference.NamedTagged) {
		si, ok := byID[rec.ID]
		if !ok {
			si = &saveImage{rec: rec}
			byID[rec.ID] = si
			out = append(out, si)
		}
		if tag != nil && !slices.ContainsFunc(si.tags, func(t reference.NamedTagged) bool { return t.String() == tag.String() }) {
			si.tags = append(si.tags, tag)
		}
	}
	refs, err := refsByImage(tx)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		r, err := reference.ParseAnyReference(name)
		if err != nil {
			return nil, errInvalid("%s", err.Error())
		}
		n, isNamed := r.(reference.Named)
		if isNamed && reference.IsNameOnly(n) && reference.FamiliarName(n) != string(digest.Canonical) {
			found := false
			for id, l := range refs {
				for _, nr := range l {
					if t, ok := nr.ref.(reference.NamedTagged); ok && t.Name() == n.Name() {
						rec, err := getImage(tx, id)
						if err != nil {
							return nil, err
						}
						if rec != nil {
							add(rec, t)
							found = true
						}
					}
				}
			}
			if found {
				continue
			}
		}
		rec, p, err := resolve(tx, name)
		if err != nil {
			return nil, err
		}
		var tag reference.NamedTagged
		if t, ok := p.named.(reference.NamedTagged); ok && p.byName {
			tag = t
		}
		add(rec, tag)
	}
	// Stable order: tags of a repository together, as a user would list them.
	for _, si := range out {
		slices.SortFunc(si.tags, func(a, b reference.NamedTagged) int {
			switch {
			case a.String() < b.String():
				return -1
			case a.String() > b.String():
				return 1
			}
			return 0
		})
	}
	return out, nil
}

// ImageSave writes the images as one tarball in Docker 25+'s `docker save` layout: OCI
// blobs/sha256 with uncompressed layers, index.json and oci-layout, plus manifest.json and
// repositories for older readers.
func (s *Service) ImageSave(ctx context.Context, names []string, w io.Writer) error {
	if len(names) == 0 {
		return errInvalid("no image names given")
	}
	ls := s.newLease()
	defer ls.release(context.WithoutCancel(ctx))
	var imgs []*saveImage
	if err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		imgs, err = parseSaveNames(tx, names)
		return err
	}); err != nil {
		return err
	}
	blobs := map[digest.Digest]*saveBlob{}
	var items []dockerManifestItem
	var index []ocispec.Descriptor
	repos := map[string]map[string]string{}
	for _, si := range imgs {
		rec := si.rec
		ls.blob(rec.Config.Digest)
		for _, l := range rec.Layers {
			ls.blob(l.Blob.Digest)
		}
		cb, err := s.content.readAll(rec.Config.Digest, maxMetaSize)
		if err != nil {
			return fmt.Errorf("save %s: %w", rec.ID, err)
		}
		if si.cfg, err = parseConfig(cb); err != nil {
			return fmt.Errorf("save %s: %w", rec.ID, err)
		}
		created := time.Unix(0, 0)
		if si.cfg.Created != nil {
			created = *si.cfg.Created
		}
		blobs[rec.Config.Digest] = &saveBlob{dg: rec.Config.Digest, size: int64(len(cb)), mtime: created, store: true}
		// Shaped as current dockerd writes it: no platform on descriptors, every layer listed
		// (uncompressed) in the manifest and in manifest.json's LayerSources.
		m := ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: rec.Config.Digest, Size: int64(len(cb))},
		}
		sources := map[digest.Digest]ocispec.Descriptor{}
		var layerPaths []string
		for i := range rec.Layers {
			l := &rec.Layers[i]
			if l.TarSize <= 0 {
				if l.TarSize, err = s.tarSize(l); err != nil {
					return fmt.Errorf("save %s: %w", rec.ID, err)
				}
			}
			ld := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: l.DiffID, Size: l.TarSize}
			m.Layers = append(m.Layers, ld)
			sources[l.DiffID] = ld
			blobs[l.DiffID] = &saveBlob{dg: l.DiffID, size: l.TarSize, mtime: created, layer: l}
			layerPaths = append(layerPaths, path.Join("blobs", "sha256", l.DiffID.Encoded()))
		}
		mb, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode manifest: %w", err)
		}
		md := digest.FromBytes(mb)
		blobs[md] = &saveBlob{dg: md, size: int64(len(mb)), mtime: time.Unix(0, 0), data: mb}
		var repoTags []string
		for _, t := range si.tags {
			fam := reference.FamiliarName(t)
			if repos[fam] == nil {
				repos[fam] = map[string]string{}
			}
			if len(rec.Layers) > 0 {
				repos[fam][t.Tag()] = rec.Layers[len(rec.Layers)-1].DiffID.Encoded()
			}
			repoTags = append(repoTags, reference.FamiliarString(t))
			index = append(index, ocispec.Descriptor{
				MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(mb)),
				Annotations: map[string]string{annotationImageName: t.String(), annotationRefName: t.Tag()},
			})
		}
		if len(si.tags) == 0 {
			index = append(index, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(mb))})
		}
		items = append(items, dockerManifestItem{
			Config:       path.Join("blobs", "sha256", rec.Config.Digest.Encoded()),
			RepoTags:     repoTags,
			Layers:       layerPaths,
			LayerSources: sources,
		})
	}

	bw := bufio.NewWriterSize(w, copyBufSize)
	tw := tar.NewWriter(bw)
	epoch := time.Unix(0, 0)
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch})
	}
	file := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := dir("blobs/"); err != nil {
		return err
	}
	if err := dir("blobs/sha256/"); err != nil {
		return err
	}
	keys := make([]digest.Digest, 0, len(blobs))
	for d := range blobs {
		keys = append(keys, d)
	}
	slices.Sort(keys)
	for _, d := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.writeSaveBlob(tw, blobs[d]); err != nil {
			return fmt.Errorf("save: %w", err)
		}
	}
	idx, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: index})
	if err != nil {
		return err
	}
	mj, err := jsonLine(items)
	if err != nil {
		return err
	}
	if err := file("index.json", idx); err != nil {
		return err
	}
	if err := file("manifest.json", mj); err != nil {
		return err
	}
	if err := file("oci-layout", []byte(ociLayoutContent)); err != nil {
		return err
	}
	if len(repos) > 0 {
		rj, err := jsonLine(repos)
		if err != nil {
			return err
		}
		if err := file("repositories", rj); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	for _, si := range imgs {
		s.publish(events.ActionSave, si.rec.ID.String(), eventAttrs(si.rec.Labels, si.rec.ID.String()))
	}
	return nil
}

// jsonLine encodes v as json.Encoder does (with a trailing newline), as Docker writes
// manifest.json and repositories.
func jsonLine(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func (s *Service) writeSaveBlob(tw *tar.Writer, b *saveBlob) error {
	name := "blobs/sha256/" + b.dg.Encoded()
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: b.size, ModTime: b.mtime}); err != nil {
		return err
	}
	switch {
	case b.data != nil:
		_, err := tw.Write(b.data)
		return err
	case b.store:
		f, err := s.content.open(b.dg)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.CopyN(tw, f, b.size)
		return err
	}
	// A layer: the uncompressed tar, verified against its diffID while written.
	f, err := s.content.open(b.layer.Blob.Digest)
	if err != nil {
		return err
	}
	defer f.Close()
	dr, _, err := archive.Decompress(bufio.NewReaderSize(f, copyBufSize))
	if err != nil {
		return err
	}
	defer dr.Close()
	dg := digest.SHA256.Digester()
	n, err := io.CopyBuffer(io.MultiWriter(tw, dg.Hash()), io.LimitReader(dr, b.size), make([]byte, copyBufSize))
	if err != nil {
		return fmt.Errorf("layer %s: %w", b.layer.DiffID, err)
	}
	if n != b.size || dg.Digest() != b.layer.DiffID {
		return fmt.Errorf("layer %s: stored content does not match its diff ID", b.layer.DiffID)
	}
	return nil
}

// tarSize measures the uncompressed size of a layer whose size was not recorded.
func (s *Service) tarSize(l *layerRecord) (int64, error) {
	if l.Blob.Digest == l.DiffID {
		return l.Blob.Size, nil
	}
	f, err := s.content.open(l.Blob.Digest)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	dr, _, err := archive.Decompress(bufio.NewReaderSize(f, copyBufSize))
	if err != nil {
		return 0, err
	}
	defer dr.Close()
	return io.CopyBuffer(io.Discard, dr, make([]byte, copyBufSize))
}
