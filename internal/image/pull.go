package image

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"
)

// parsePlatform parses os[/arch[/variant]]; empty is linux on the daemon's architecture.
func parsePlatform(p string) (v1.Platform, error) {
	if p == "" {
		return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}, nil
	}
	parts := strings.Split(strings.ToLower(p), "/")
	if len(parts) > 3 || parts[0] == "" {
		return v1.Platform{}, errInvalid("invalid platform %q: expected os[/arch[/variant]]", p)
	}
	pl := v1.Platform{OS: parts[0], Architecture: runtime.GOARCH}
	if len(parts) > 1 {
		pl.Architecture = parts[1]
	}
	if len(parts) > 2 {
		pl.Variant = parts[2]
	}
	return pl, nil
}

// syncProgress serialises progress calls from concurrent transfers.
func syncProgress(p Progress) Progress {
	if p == nil {
		return func(jsonstream.Message) {}
	}
	var mu sync.Mutex
	return func(m jsonstream.Message) {
		mu.Lock()
		defer mu.Unlock()
		p(m)
	}
}

// Pull downloads an image from its registry: a multi-platform index is resolved to the
// platform asked for (default linux on the daemon's architecture), missing layer blobs are
// downloaded concurrently, verified and stored once, unpacked in order, and the image is
// recorded with its tag and RepoDigest, names last. It reports Docker's progress messages and
// returns the image ID. A failed pull leaves no blob, snapshot or name behind that no image uses.
func (s *Service) Pull(ctx context.Context, ref, platform string, auth authn.Authenticator, progress Progress) (string, error) {
	progress = syncProgress(progress)
	named, rref, err := s.normalizeRef(ref)
	if err != nil {
		return "", err
	}
	plat, err := parsePlatform(platform)
	if err != nil {
		return "", err
	}
	opts := s.remoteOptions(ctx, auth)
	desc, err := remote.Get(rref, append(opts, remote.WithPlatform(plat))...)
	if err != nil {
		return "", registryError("pull", named, err)
	}
	if desc.MediaType == types.DockerManifestSchema1 || desc.MediaType == types.DockerManifestSchema1Signed {
		return "", errInvalid("pull %s: Docker image manifest schema 1 is not supported; push the image again with a current client", reference.FamiliarString(named))
	}
	if !desc.MediaType.IsIndex() && !desc.MediaType.IsImage() {
		return "", errInvalid("pull %s: unsupported manifest media type %q", reference.FamiliarString(named), desc.MediaType)
	}
	img, err := desc.Image()
	if err != nil {
		if desc.MediaType.IsIndex() {
			return "", errNotFound("no matching manifest for %s in the manifest list entries: %v", plat.String(), err)
		}
		return "", registryError("pull", named, err)
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return "", registryError("pull", named, err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return "", registryError("pull", named, err)
	}
	if !isManifestType(string(mt)) {
		return "", errInvalid("pull %s: unsupported manifest media type %q", reference.FamiliarString(named), mt)
	}
	m, err := parseManifest(rawManifest)
	if err != nil {
		return "", err
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return "", registryError("pull", named, err)
	}
	if got := digest.FromBytes(rawCfg); got != m.Config.Digest {
		return "", errInvalid("pull %s: config has digest %s, manifest says %s", reference.FamiliarString(named), got, m.Config.Digest)
	}
	cfg, err := parseConfig(rawCfg)
	if err != nil {
		return "", err
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return "", errInvalid("pull %s: manifest has %d layers but the config lists %d diff IDs", reference.FamiliarString(named), len(m.Layers), len(cfg.RootFS.DiffIDs))
	}

	// Docker: "latest: Pulling from library/busybox".
	tagOrDigest := ""
	switch r := named.(type) {
	case reference.Canonical:
		tagOrDigest = r.Digest().String()
	case reference.Tagged:
		tagOrDigest = r.Tag()
	}
	progress(jsonstream.Message{ID: tagOrDigest, Status: "Pulling from " + reference.Path(named)})

	ls := s.newLease()
	defer ls.release(context.WithoutCancel(ctx))
	mh, err := img.Digest()
	if err != nil {
		return "", registryError("pull", named, err)
	}
	manifestDigest := digest.Digest(mh.String())
	if _, _, err := s.content.write(bytes.NewReader(rawCfg), m.Config.Digest, ls.blob); err != nil {
		return "", err
	}
	if _, _, err := s.content.write(bytes.NewReader(rawManifest), manifestDigest, ls.blob); err != nil {
		return "", err
	}
	id := m.Config.Digest
	now := time.Now().UTC()
	rec := &imageRecord{
		ID:       id,
		Manifest: ocispec.Descriptor{MediaType: string(mt), Digest: manifestDigest, Size: int64(len(rawManifest))},
		Config:   ocispec.Descriptor{MediaType: m.Config.MediaType, Digest: id, Size: int64(len(rawCfg))},
		Added:    now,
		Labels:   cfg.Config.Labels,
	}
	if rec.Config.MediaType == "" {
		rec.Config.MediaType = ocispec.MediaTypeImageConfig
	}
	if cfg.Created != nil {
		rec.Created = cfg.Created.UTC()
	}
	if err := s.pullLayers(ctx, rref.Context(), m, cfg.RootFS.DiffIDs, rec, opts, ls, progress); err != nil {
		return "", err
	}
	for _, l := range rec.Layers {
		rec.Size += l.Size
	}

	// Names are written last, in the same transaction as the image record.
	repoDigest, err := reference.WithDigest(reference.TrimNamed(named), digest.Digest(desc.Digest.String()))
	if err != nil {
		return "", errInvalid("pull %s: %v", reference.FamiliarString(named), err)
	}
	upToDate := false
	err = s.db.Update(func(tx *bbolt.Tx) error {
		cur, err := getImage(tx, id)
		if err != nil {
			return err
		}
		if cur == nil {
			if _, tagged := named.(reference.NamedTagged); tagged {
				rec.LastTagTime = now
			}
			if err := putImage(tx, rec); err != nil {
				return err
			}
		}
		old, err := getRef(tx, named.String())
		if err != nil {
			return err
		}
		upToDate = cur != nil && old != nil && old.ID == id
		if !upToDate {
			if err := putRef(tx, named.String(), refRecord{ID: id, Created: now}); err != nil {
				return err
			}
		}
		if repoDigest.String() != named.String() {
			if old, err := getRef(tx, repoDigest.String()); err != nil {
				return err
			} else if old == nil || old.ID != id {
				return putRef(tx, repoDigest.String(), refRecord{ID: id, Created: now})
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("record image %s: %w", id, err)
	}
	progress(jsonstream.Message{Status: "Digest: " + desc.Digest.String()})
	if upToDate {
		progress(jsonstream.Message{Status: "Status: Image is up to date for " + reference.FamiliarString(named)})
	} else {
		progress(jsonstream.Message{Status: "Status: Downloaded newer image for " + reference.FamiliarString(named)})
	}
	s.publish(events.ActionPull, reference.FamiliarString(named), eventAttrs(rec.Labels, reference.FamiliarString(named)))
	return id.String(), nil
}

// pullLayers fills rec.Layers: downloads the missing blobs (pullJobs at a time, each retried)
// while unpacking finished ones in chain order, as Docker overlaps download and extraction.
func (s *Service) pullLayers(ctx context.Context, repo name.Repository, m ocispec.Manifest, diffIDs []digest.Digest, rec *imageRecord, opts []remote.Option, ls *lease, progress Progress) error {
	chains := chainIDs(diffIDs)
	n := len(m.Layers)
	rec.Layers = make([]layerRecord, n)
	done := make([]chan struct{}, n)

	dctx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(dctx)
	// Every download has finished before the lease is released (deferred by the caller).
	defer func() {
		cancel()
		_ = g.Wait()
	}()
	sem := make(chan struct{}, pullJobs)
	for i, l := range m.Layers {
		if !isLayerType(l.MediaType) {
			return errInvalid("pull: unsupported layer media type %q", l.MediaType)
		}
		ls.blob(l.Digest)
		ls.snap(chains[i].String())
		rec.Layers[i] = layerRecord{
			Blob:    ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size},
			DiffID:  diffIDs[i],
			ChainID: chains[i],
		}
		done[i] = make(chan struct{})
		id := shortID(l.Digest)
		if size, err := s.content.stat(l.Digest); err == nil && (l.Size == 0 || size == l.Size) {
			rec.Layers[i].Blob.Size = size
			progress(jsonstream.Message{ID: id, Status: "Already exists"})
			close(done[i])
			continue
		}
		progress(jsonstream.Message{ID: id, Status: "Pulling fs layer"})
		ch := done[i]
		desc := l
		g.Go(func() error {
			select {
			case sem <- struct{}{}:
			default:
				progress(jsonstream.Message{ID: id, Status: "Waiting"})
				select {
				case sem <- struct{}{}:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			defer func() { <-sem }()
			if err := s.fetchBlob(gctx, repo, desc, opts, progress); err != nil {
				return err
			}
			close(ch)
			return nil
		})
	}
	for i := range rec.Layers {
		select {
		case <-done[i]:
		case <-gctx.Done():
			if err := g.Wait(); err != nil {
				return err
			}
			return gctx.Err()
		}
		id := shortID(rec.Layers[i].Blob.Digest)
		if sz, err := s.content.stat(rec.Layers[i].Blob.Digest); err == nil {
			rec.Layers[i].Blob.Size = sz
		}
		extracting := func(msg jsonstream.Message) {
			if msg.Status == "Loading layer" {
				msg.Status, msg.ID = "Extracting", id
			}
			progress(msg)
		}
		if err := s.unpack(ctx, rec.Layers[:i+1], extracting); err != nil {
			return err
		}
		progress(jsonstream.Message{ID: id, Status: "Pull complete"})
	}
	return nil
}

// fetchBlob downloads one layer blob into the content store, verifying its digest and size,
// with retries on transient failures.
func (s *Service) fetchBlob(ctx context.Context, repo name.Repository, d ocispec.Descriptor, opts []remote.Option, progress Progress) error {
	id := shortID(d.Digest)
	ref := repo.Digest(d.Digest.String())
	ropts := append(append([]remote.Option(nil), opts...), remote.WithContext(ctx))
	err := s.withRetries(ctx, func() error {
		l, err := remote.Layer(ref, ropts...)
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		defer rc.Close()
		progress(jsonstream.Message{ID: id, Status: "Downloading", Progress: &jsonstream.Progress{Current: 0, Total: d.Size}})
		pr := &progressReader{r: rc, total: d.Size, id: id, status: "Downloading", fn: progress}
		// The caller leased d.Digest already; lease.add is not safe for concurrent use.
		_, size, err := s.content.write(pr, d.Digest, nil)
		if err != nil {
			return err
		}
		if d.Size != 0 && size != d.Size {
			return errInvalid("blob %s has size %d, manifest says %d", d.Digest, size, d.Size)
		}
		return nil
	}, func(wait time.Duration, err error) {
		s.log.Info("retrying layer download", "layer", d.Digest, "err", err, "wait", wait)
		progress(jsonstream.Message{ID: id, Status: fmt.Sprintf("Retrying in %s", wait.Round(time.Millisecond))})
	})
	if err != nil {
		if errdefs.IsInvalidArgument(err) {
			return fmt.Errorf("download layer %s: %w", d.Digest, err)
		}
		return classify(errdefs.ErrUnavailable, "download layer %s: %w", d.Digest, err)
	}
	progress(jsonstream.Message{ID: id, Status: "Verifying Checksum"})
	progress(jsonstream.Message{ID: id, Status: "Download complete"})
	return nil
}
