package image

import (
	"context"
	"path"
	"slices"
	"time"

	"github.com/distribution/reference"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/storage"
	"go.etcd.io/bbolt"
)

// ImageList lists images as GET /images/json. There are no intermediate images, so all only
// matters for Docker compatibility. Filters: before, dangling, label, reference, since, until.
func (s *Service) ImageList(ctx context.Context, all bool, f Filters) ([]image.Summary, error) {
	if err := checkFilters(f, "before", "dangling", "label", "reference", "since", "until"); err != nil {
		return nil, err
	}
	dangling, danglingSet, err := boolFilter(f, "dangling")
	if err != nil {
		return nil, err
	}
	until, untilSet, err := untilFilter(f, time.Now())
	if err != nil {
		return nil, err
	}
	for _, p := range f["reference"] {
		if _, err := path.Match(p, ""); err != nil {
			return nil, errInvalid("invalid filter 'reference=%s': %v", p, err)
		}
	}
	var out []image.Summary
	err = s.db.View(func(tx *bbolt.Tx) error {
		var before, since *time.Time
		for _, kv := range []struct {
			name string
			dst  **time.Time
		}{{"before", &before}, {"since", &since}} {
			for _, v := range f[kv.name] {
				rec, _, err := resolve(tx, v)
				if err != nil {
					return err
				}
				t := rec.Created
				*kv.dst = &t
			}
		}
		imgs, err := allImages(tx)
		if err != nil {
			return err
		}
		refs, err := refsByImage(tx)
		if err != nil {
			return err
		}
		for _, rec := range imgs {
			if before != nil && !rec.Created.Before(*before) {
				continue
			}
			if since != nil && !rec.Created.After(*since) {
				continue
			}
			if untilSet && !rec.Created.Before(until) {
				continue
			}
			if !matchLabels(rec.Labels, f["label"]) {
				continue
			}
			names := refs[rec.ID]
			if danglingSet && dangling != (len(names) == 0) {
				continue
			}
			if pats := f["reference"]; len(pats) > 0 {
				names = slices.DeleteFunc(slices.Clone(names), func(n namedRef) bool {
					for _, p := range pats {
						if ok, _ := reference.FamiliarMatch(p, n.ref); ok {
							return false
						}
					}
					return true
				})
				if len(names) == 0 {
					continue
				}
			}
			tags, digests := repoTagsDigests(names)
			out = append(out, image.Summary{
				Containers:  -1,
				Created:     unixOrZero(rec.Created),
				ID:          rec.ID.String(),
				Labels:      rec.Labels,
				RepoDigests: digests,
				RepoTags:    tags,
				SharedSize:  -1,
				Size:        rec.Size,
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Newest first, as dockerd returns them.
	slices.SortStableFunc(out, func(a, b image.Summary) int {
		switch {
		case a.Created > b.Created:
			return -1
		case a.Created < b.Created:
			return 1
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	if out == nil {
		out = []image.Summary{}
	}
	return out, nil
}

// lookup resolves ref and returns the record, its names and its parsed config.
func (s *Service) lookup(ref string) (*imageRecord, []namedRef, *imageConfig, error) {
	var rec *imageRecord
	var names []namedRef
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		if rec, _, err = resolve(tx, ref); err != nil {
			return err
		}
		names, err = refsOf(tx, rec.ID)
		return err
	})
	if err != nil {
		return nil, nil, nil, err
	}
	b, err := s.content.readAll(rec.Config.Digest, maxMetaSize)
	if err != nil {
		return nil, nil, nil, err
	}
	cfg, err := parseConfig(b)
	if err != nil {
		return nil, nil, nil, err
	}
	return rec, names, cfg, nil
}

// ImageInspect returns Docker's inspect document for ref.
func (s *Service) ImageInspect(ctx context.Context, ref string) (image.InspectResponse, error) {
	rec, names, cfg, err := s.lookup(ref)
	if err != nil {
		return image.InspectResponse{}, err
	}
	tags, digests := repoTagsDigests(names)
	resp := image.InspectResponse{
		ID:           rec.ID.String(),
		RepoTags:     tags,
		RepoDigests:  digests,
		Comment:      cfg.Comment,
		Author:       cfg.Author,
		Config:       &cfg.Config,
		Architecture: cfg.Architecture,
		Variant:      cfg.Variant,
		Os:           cfg.OS,
		OsVersion:    cfg.OSVersion,
		Size:         rec.Size,
		GraphDriver:  &storage.DriverData{Name: "overlay2", Data: map[string]string{}},
		RootFS:       image.RootFS{Type: "layers"},
		Metadata:     image.Metadata{LastTagTime: rec.LastTagTime},
	}
	if cfg.Created != nil {
		resp.Created = cfg.Created.UTC().Format(time.RFC3339Nano)
	}
	for _, d := range cfg.RootFS.DiffIDs {
		resp.RootFS.Layers = append(resp.RootFS.Layers, d.String())
	}
	return resp, nil
}

// ImageHistory returns the config history newest first, as `docker history` shows it. Only the
// newest entry carries the image ID and tags (there are no parent images); layer entries carry
// the unpacked layer size, empty_layer entries 0.
func (s *Service) ImageHistory(ctx context.Context, ref string) ([]image.HistoryResponseItem, error) {
	rec, names, cfg, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	out := make([]image.HistoryResponseItem, 0, len(cfg.History))
	li := 0
	for _, h := range cfg.History {
		var size int64
		if !h.EmptyLayer {
			if li < len(rec.Layers) {
				size = rec.Layers[li].Size
			}
			li++
		}
		var created int64
		if h.Created != nil {
			created = unixOrZero(*h.Created)
		}
		out = append(out, image.HistoryResponseItem{
			ID: "<missing>", Created: created, CreatedBy: h.CreatedBy, Comment: h.Comment, Size: size,
		})
	}
	slices.Reverse(out)
	if len(out) > 0 {
		out[0].ID = rec.ID.String()
		for _, n := range names {
			if _, ok := n.ref.(reference.NamedTagged); ok {
				out[0].Tags = append(out[0].Tags, reference.FamiliarString(n.ref))
			}
		}
	}
	return out, nil
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// Image is what the daemon needs to create a container from an image.
type Image struct {
	ID string // "sha256:<hex>", the config digest
	// ChainID names the committed snapshot of the top layer: the parent to Prepare a container
	// rootfs on. It is empty for an image without layers.
	ChainID string
	Config  dockerspec.DockerOCIImage // the image config (platform, rootfs, history, run config)
}

// Resolve finds the image ref names (name, short or full ID, name@digest), as the image
// endpoints do, with Docker's "No such image" not-found error.
func (s *Service) Resolve(ctx context.Context, ref string) (Image, error) {
	rec, _, cfg, err := s.lookup(ref)
	if err != nil {
		return Image{}, err
	}
	img := Image{ID: rec.ID.String(), Config: cfg.DockerOCIImage}
	if n := len(rec.Layers); n > 0 {
		img.ChainID = rec.Layers[n-1].ChainID.String()
	}
	return img, nil
}
