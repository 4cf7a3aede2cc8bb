package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"runtime"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/archive"
	"github.com/distribution/reference"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
)

// maxMetaSize bounds JSON documents (manifest.json, index.json, manifests, configs) read into
// memory from an archive.
const maxMetaSize = 64 << 20

// Annotations that carry image names in OCI layouts.
const (
	annotationImageName = "io.containerd.image.name"
	annotationRefName   = ocispec.AnnotationRefName
)

// dockerManifestItem is one entry of a docker-archive's manifest.json.
type dockerManifestItem struct {
	Config       string
	RepoTags     []string
	Layers       []string
	Parent       string                               `json:",omitempty"`
	LayerSources map[digest.Digest]ocispec.Descriptor `json:",omitempty"`
}

// parseDockerManifest decodes and validates manifest.json.
func parseDockerManifest(b []byte) ([]dockerManifestItem, error) {
	var items []dockerManifestItem
	if err := json.Unmarshal(b, &items); err != nil {
		return nil, errInvalid("invalid manifest.json: %v", err)
	}
	for i, it := range items {
		if it.Config == "" {
			return nil, errInvalid("invalid manifest.json: entry %d has no Config", i)
		}
		for _, l := range it.Layers {
			if l == "" {
				return nil, errInvalid("invalid manifest.json: entry %d has an empty layer path", i)
			}
		}
	}
	return items, nil
}

// parseIndex decodes an OCI index (index.json or a nested index / Docker manifest list).
func parseIndex(b []byte) (ocispec.Index, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return idx, errInvalid("invalid image index: %v", err)
	}
	if idx.SchemaVersion != 2 {
		return idx, errInvalid("invalid image index: schemaVersion %d", idx.SchemaVersion)
	}
	if idx.MediaType != "" && !isIndexType(idx.MediaType) {
		return idx, errInvalid("invalid image index: media type %q", idx.MediaType)
	}
	for _, d := range idx.Manifests {
		if err := d.Digest.Validate(); err != nil {
			return idx, errInvalid("invalid image index: descriptor digest %q: %v", d.Digest, err)
		}
	}
	return idx, nil
}

// parseManifest decodes an OCI or Docker v2 schema 2 image manifest.
func parseManifest(b []byte) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return m, errInvalid("invalid image manifest: %v", err)
	}
	if m.SchemaVersion != 2 {
		return m, errInvalid("invalid image manifest: schemaVersion %d", m.SchemaVersion)
	}
	if m.MediaType != "" && !isManifestType(m.MediaType) {
		return m, errInvalid("invalid image manifest: media type %q", m.MediaType)
	}
	if err := m.Config.Digest.Validate(); err != nil {
		return m, errInvalid("invalid image manifest: config digest %q: %v", m.Config.Digest, err)
	}
	for _, l := range m.Layers {
		if err := l.Digest.Validate(); err != nil {
			return m, errInvalid("invalid image manifest: layer digest %q: %v", l.Digest, err)
		}
		if !isLayerType(l.MediaType) {
			return m, errInvalid("invalid image manifest: unsupported layer media type %q", l.MediaType)
		}
	}
	return m, nil
}

// imageConfig is the image config as Docker writes it: the OCI config plus Docker's fields.
type imageConfig struct {
	dockerspec.DockerOCIImage
	Comment string `json:"comment,omitempty"`
}

// parseConfig decodes and validates an image config.
func parseConfig(b []byte) (*imageConfig, error) {
	var c imageConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, errInvalid("invalid image config: %v", err)
	}
	if c.RootFS.Type != "layers" {
		return nil, errInvalid("invalid image config: rootfs type %q", c.RootFS.Type)
	}
	for _, d := range c.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return nil, errInvalid("invalid image config: diff ID %q: %v", d, err)
		}
	}
	return &c, nil
}

// loadArchive is an archive spooled into the content store: every regular file became a blob.
type loadArchive struct {
	files map[string]archiveFile
	links map[string]string // symlinks and hard links, resolved to archive paths
}

type archiveFile struct {
	dg   digest.Digest
	size int64
}

func cleanArchivePath(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func (a *loadArchive) lookup(name string) (archiveFile, bool) {
	name = cleanArchivePath(name)
	for range 16 {
		if f, ok := a.files[name]; ok {
			return f, true
		}
		t, ok := a.links[name]
		if !ok {
			return archiveFile{}, false
		}
		name = t
	}
	return archiveFile{}, false
}

func (a *loadArchive) read(s *Service, name string) ([]byte, bool, error) {
	f, ok := a.lookup(name)
	if !ok {
		return nil, false, nil
	}
	b, err := s.content.readAll(f.dg, maxMetaSize)
	return b, true, err
}

// spool streams the (possibly compressed) tar into the content store. Files under
// blobs/sha256/ are verified against their names while written.
func (s *Service) spool(ctx context.Context, r io.Reader, ls *lease) (*loadArchive, error) {
	dr, _, err := archive.Decompress(bufio.NewReaderSize(r, copyBufSize))
	if err != nil {
		return nil, errInvalid("load: %v", err)
	}
	defer dr.Close()
	a := &loadArchive{files: map[string]archiveFile{}, links: map[string]string{}}
	tr := tar.NewReader(dr)
	entries := 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, errInvalid("load: invalid tar archive: %v", err)
		}
		entries++
		name := cleanArchivePath(h.Name)
		switch h.Typeflag {
		case tar.TypeReg:
			var expected digest.Digest
			if hexPart, ok := strings.CutPrefix(name, "blobs/sha256/"); ok {
				if d := digest.NewDigestFromEncoded(digest.SHA256, hexPart); d.Validate() == nil {
					expected = d
				}
			}
			dg, size, err := s.content.write(tr, expected, ls.blob)
			if err != nil {
				return nil, fmt.Errorf("load %s: %w", name, err)
			}
			a.files[name] = archiveFile{dg: dg, size: size}
		case tar.TypeSymlink:
			t := h.Linkname
			if !path.IsAbs(t) {
				t = path.Join(path.Dir(name), t)
			}
			a.links[name] = cleanArchivePath(t)
		case tar.TypeLink:
			a.links[name] = cleanArchivePath(h.Linkname)
		}
	}
	if entries == 0 {
		return nil, errInvalid("load: empty archive")
	}
	return a, nil
}

// loadCandidate is one image found in an archive.
type loadCandidate struct {
	config   digest.Digest
	layers   []ocispec.Descriptor
	manifest *ocispec.Descriptor // the archive's manifest blob, if it has one
	names    []reference.Named
}

// ImageLoad loads a docker-archive (legacy or Docker 25+ layout) or an OCI image layout tarball.
func (s *Service) ImageLoad(ctx context.Context, r io.Reader, progress Progress) ([]string, error) {
	ls := s.newLease()
	defer ls.release(context.WithoutCancel(ctx))
	a, err := s.spool(ctx, r, ls)
	if err != nil {
		return nil, err
	}
	cands, err := s.findImages(a, ls)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range cands {
		id, err := s.loadImage(ctx, c, ls, progress)
		if err != nil {
			return out, err
		}
		if len(c.names) == 0 {
			out = append(out, "Loaded image ID: "+id.String())
		}
		for _, n := range c.names {
			out = append(out, "Loaded image: "+reference.FamiliarString(n))
		}
	}
	return out, nil
}

// findImages decides the archive format: manifest.json (docker-archive) wins as in Docker;
// otherwise index.json (OCI layout). Original OCI manifests are reused for docker-archive
// entries when the archive has a matching one, so manifest digests survive a round trip.
func (s *Service) findImages(a *loadArchive, ls *lease) ([]loadCandidate, error) {
	var ociCands []loadCandidate
	b, hasIndex, ociErr := a.read(s, "index.json")
	if ociErr == nil && hasIndex {
		var idx ocispec.Index
		if idx, ociErr = parseIndex(b); ociErr == nil {
			ociCands, ociErr = s.ociCandidates(idx, ls)
		}
	}
	b, ok, err := a.read(s, "manifest.json")
	if err != nil {
		return nil, err
	}
	if !ok {
		if ociErr != nil {
			return nil, ociErr
		}
		if !hasIndex {
			return nil, errInvalid("load: archive has neither manifest.json nor index.json")
		}
		return ociCands, nil
	}
	if ociErr != nil {
		// manifest.json is authoritative (as in dockerd); the OCI index only lends manifests.
		s.log.Debug("ignoring unusable index.json in docker-archive", "err", ociErr)
		ociCands = nil
	}
	items, err := parseDockerManifest(b)
	if err != nil {
		return nil, err
	}
	byConfig := map[digest.Digest]loadCandidate{}
	for _, c := range ociCands {
		byConfig[c.config] = c
	}
	var cands []loadCandidate
	for _, it := range items {
		cf, ok := a.lookup(it.Config)
		if !ok {
			return nil, errInvalid("load: config %s is missing from the archive", it.Config)
		}
		c := loadCandidate{config: cf.dg}
		for _, t := range it.RepoTags {
			n, err := reference.ParseNormalizedNamed(t)
			if err != nil {
				return nil, errInvalid("load: invalid tag %q: %v", t, err)
			}
			tagged, ok := n.(reference.NamedTagged)
			if !ok {
				return nil, errInvalid("load: invalid tag %q", t)
			}
			c.names = append(c.names, tagged)
		}
		if oc, ok := byConfig[cf.dg]; ok && len(oc.layers) == len(it.Layers) {
			c.layers, c.manifest = oc.layers, oc.manifest
		} else {
			for _, lp := range it.Layers {
				lf, ok := a.lookup(lp)
				if !ok {
					return nil, errInvalid("load: layer %s is missing from the archive", lp)
				}
				mt, err := s.sniffBlob(lf.dg)
				if err != nil {
					return nil, err
				}
				c.layers = append(c.layers, ocispec.Descriptor{MediaType: mt, Digest: lf.dg, Size: lf.size})
			}
		}
		cands = append(cands, c)
	}
	return cands, nil
}

func (s *Service) sniffBlob(d digest.Digest) (string, error) {
	f, err := s.content.open(d)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return sniffLayerType(f), nil
}

// ociCandidates resolves index.json descriptors to platform manifests.
func (s *Service) ociCandidates(idx ocispec.Index, ls *lease) ([]loadCandidate, error) {
	var cands []loadCandidate
	for _, d := range idx.Manifests {
		names := namesFromAnnotations(d.Annotations)
		md, m, err := s.resolveManifest(d, ls, 0)
		if err != nil {
			return nil, err
		}
		if m == nil {
			continue // not an image (e.g. an attestation or artifact)
		}
		// Several descriptors (one per tag) may point at the same manifest: merge their names.
		merged := false
		for i := range cands {
			if cands[i].manifest.Digest == md.Digest {
				cands[i].names = append(cands[i].names, names...)
				merged = true
			}
		}
		if !merged {
			cands = append(cands, loadCandidate{config: m.Config.Digest, layers: m.Layers, manifest: &md, names: names})
		}
	}
	return cands, nil
}

func namesFromAnnotations(a map[string]string) []reference.Named {
	parse := func(s string) reference.Named {
		n, err := reference.ParseNormalizedNamed(s)
		if err != nil {
			return nil
		}
		if _, ok := n.(reference.Canonical); ok {
			return n
		}
		return reference.TagNameOnly(n)
	}
	if v := a[annotationImageName]; v != "" {
		if n := parse(v); n != nil {
			return []reference.Named{n}
		}
	}
	// ref.name may be a full reference (skopeo, podman) or only a tag, which names nothing.
	if v := a[annotationRefName]; strings.ContainsAny(v, ":/@") {
		if n := parse(v); n != nil {
			return []reference.Named{n}
		}
	}
	return nil
}

// resolveManifest follows a descriptor down to the image manifest for this platform.
func (s *Service) resolveManifest(d ocispec.Descriptor, ls *lease, depth int) (ocispec.Descriptor, *ocispec.Manifest, error) {
	if depth > 4 {
		return d, nil, errInvalid("load: image indexes nested too deeply")
	}
	ls.blob(d.Digest)
	b, err := s.content.readAll(d.Digest, maxMetaSize)
	if err != nil {
		return d, nil, errInvalid("load: blob %s is missing from the archive", d.Digest)
	}
	switch {
	case isManifestType(d.MediaType):
		m, err := parseManifest(b)
		if err != nil {
			return d, nil, err
		}
		if m.Config.MediaType != "" && m.Config.MediaType != ocispec.MediaTypeImageConfig && m.Config.MediaType != mediaTypeDockerConfig {
			return d, nil, nil // an artifact, not an image
		}
		return d, &m, nil
	case isIndexType(d.MediaType):
		idx, err := parseIndex(b)
		if err != nil {
			return d, nil, err
		}
		best := -1
		for i, c := range idx.Manifests {
			if !isManifestType(c.MediaType) && !isIndexType(c.MediaType) {
				continue
			}
			if c.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
				continue
			}
			if c.Platform == nil || (c.Platform.OS == runtime.GOOS && c.Platform.Architecture == runtime.GOARCH) {
				best = i
				break
			}
		}
		if best < 0 {
			return d, nil, errInvalid("load: index %s has no manifest for %s/%s", d.Digest, runtime.GOOS, runtime.GOARCH)
		}
		return s.resolveManifest(idx.Manifests[best], ls, depth+1)
	}
	return d, nil, nil
}

// loadImage unpacks one image and records it with its names.
func (s *Service) loadImage(ctx context.Context, c loadCandidate, ls *lease, progress Progress) (digest.Digest, error) {
	ls.blob(c.config)
	cfgBytes, err := s.content.readAll(c.config, maxMetaSize)
	if err != nil {
		return "", errInvalid("load: config %s is missing from the archive", c.config)
	}
	cfg, err := parseConfig(cfgBytes)
	if err != nil {
		return "", err
	}
	id := c.config
	var rec *imageRecord
	var moved []string
	for attempt := 0; ; attempt++ {
		var existing *imageRecord
		if err := s.db.View(func(tx *bbolt.Tx) error {
			existing, err = getImage(tx, id)
			return err
		}); err != nil {
			return "", err
		}
		rec = existing
		if rec == nil {
			if rec, err = s.newRecord(c, cfg, cfgBytes, ls); err != nil {
				return "", err
			}
			if err := s.unpack(ctx, rec.Layers, progress); err != nil {
				return "", err
			}
			rec.Size = 0
			for _, l := range rec.Layers {
				rec.Size += l.Size
			}
		}
		err = s.db.Update(func(tx *bbolt.Tx) error {
			moved = nil
			if existing == nil {
				if err := putImage(tx, rec); err != nil {
					return err
				}
			} else if cur, err := getImage(tx, id); err != nil {
				return err
			} else if cur == nil {
				return errMoved // deleted meanwhile: load it as a new image
			}
			for _, n := range c.names {
				old, err := getRef(tx, n.String())
				if err != nil {
					return err
				}
				if old != nil && old.ID != id {
					moved = append(moved, fmt.Sprintf("The image %s already exists, renaming the old one with ID %s to empty string\n", reference.FamiliarString(n), old.ID))
				}
				if err := putRef(tx, n.String(), refRecord{ID: id, Created: time.Now().UTC()}); err != nil {
					return err
				}
			}
			return nil
		})
		if errors.Is(err, errMoved) && attempt < 3 {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("record image %s: %w", id, err)
		}
		break
	}
	if progress != nil {
		for _, m := range moved {
			progress(jsonstream.Message{Stream: m})
		}
	}
	s.publish(events.ActionLoad, id.String(), eventAttrs(rec.Labels, id.String()))
	return id, nil
}

// newRecord builds the record of a new image, writing a manifest when the archive had none.
// It leases every blob and chain snapshot the image needs.
func (s *Service) newRecord(c loadCandidate, cfg *imageConfig, cfgBytes []byte, ls *lease) (*imageRecord, error) {
	diffIDs := cfg.RootFS.DiffIDs
	if len(diffIDs) != len(c.layers) {
		return nil, errInvalid("load: image %s has %d layers but its config lists %d diff IDs", c.config, len(c.layers), len(diffIDs))
	}
	chains := chainIDs(diffIDs)
	rec := &imageRecord{
		ID:     c.config,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: c.config, Size: int64(len(cfgBytes))},
		Added:  time.Now().UTC(),
		Labels: cfg.Config.Labels,
	}
	if cfg.Created != nil {
		rec.Created = cfg.Created.UTC()
	}
	for i, l := range c.layers {
		ls.blob(l.Digest)
		size, err := s.content.stat(l.Digest)
		if err != nil {
			return nil, errInvalid("load: layer blob %s is missing from the archive", l.Digest)
		}
		if l.Size != 0 && l.Size != size {
			return nil, errInvalid("load: layer blob %s has size %d, manifest says %d", l.Digest, size, l.Size)
		}
		ls.snap(chains[i].String())
		rec.Layers = append(rec.Layers, layerRecord{
			Blob:    ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: size},
			DiffID:  diffIDs[i],
			ChainID: chains[i],
		})
	}
	if c.manifest != nil {
		rec.Manifest = ocispec.Descriptor{MediaType: c.manifest.MediaType, Digest: c.manifest.Digest, Size: c.manifest.Size}
		if c.manifest.Size == 0 {
			n, err := s.content.stat(c.manifest.Digest)
			if err != nil {
				return nil, err
			}
			rec.Manifest.Size = n
		}
		return rec, nil
	}
	md, err := s.writeManifest(rec, ls)
	if err != nil {
		return nil, err
	}
	rec.Manifest = md
	return rec, nil
}

// writeManifest stores an OCI manifest for a record's config and layer blobs.
func (s *Service) writeManifest(rec *imageRecord, ls *lease) (ocispec.Descriptor, error) {
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    rec.Config,
	}
	for _, l := range rec.Layers {
		m.Layers = append(m.Layers, l.Blob)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encode manifest: %w", err)
	}
	d := digest.FromBytes(b)
	if _, _, err := s.content.write(bytes.NewReader(b), d, ls.blob); err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: int64(len(b))}, nil
}
