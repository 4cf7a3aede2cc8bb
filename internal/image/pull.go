package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
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
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
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
// recorded with its tag and RepoDigest, names last. Docker Hub images are tried at each
// --registry-mirror first. A reference with neither tag nor digest pulls every tag of the
// repository, as dockerd does when the API's tag parameter is empty (`docker pull --all-tags`).
// It reports Docker's progress messages and returns the image ID (the last one pulled). A
// failed pull leaves no blob, snapshot or name behind that no image uses.
func (s *Service) Pull(ctx context.Context, ref, platform string, auth authn.Authenticator, progress Progress) (string, error) {
	progress = syncProgress(progress)
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", errInvalid("invalid reference format: %v", err)
	}
	plat, err := parsePlatform(platform)
	if err != nil {
		return "", err
	}
	if reference.IsNameOnly(n) {
		return s.pullAllTags(ctx, n, plat, auth, progress)
	}
	named, err := pullName(n)
	if err != nil {
		return "", err
	}
	res, err := s.pullOne(ctx, named, plat, auth, progress)
	if err != nil {
		return "", err
	}
	progress(statusMessage(res.upToDate, named))
	return res.id.String(), nil
}

// pullName is what a reference with a tag or digest pulls: name:tag@digest pulls by digest,
// as Docker does.
func pullName(n reference.Named) (reference.Named, error) {
	if c, ok := n.(reference.Canonical); ok {
		d, err := reference.WithDigest(reference.TrimNamed(n), c.Digest())
		if err != nil {
			return nil, errInvalid("invalid reference format: %v", err)
		}
		return d, nil
	}
	return reference.TagNameOnly(n), nil
}

// statusMessage is Docker's last line of a pull.
func statusMessage(upToDate bool, n reference.Named) jsonstream.Message {
	if upToDate {
		return jsonstream.Message{Status: "Status: Image is up to date for " + reference.FamiliarString(n)}
	}
	return jsonstream.Message{Status: "Status: Downloaded newer image for " + reference.FamiliarString(n)}
}

// pullAllTags pulls every tag the registry lists for repository n, one after the other, with
// Docker's per-tag progress ("<tag>: Pulling from ...") and one status line for the repository.
func (s *Service) pullAllTags(ctx context.Context, n reference.Named, plat v1.Platform, auth authn.Authenticator, progress Progress) (string, error) {
	tags, err := s.listTags(ctx, n, auth)
	if err != nil {
		return "", err
	}
	if len(tags) == 0 {
		return "", errNotFound("no tags found for %s", reference.FamiliarName(n))
	}
	var last pulled
	anyNew := false
	for _, t := range tags {
		tn, err := reference.WithTag(n, t)
		if err != nil {
			return "", errInvalid("pull %s: registry listed an invalid tag %q: %v", reference.FamiliarName(n), t, err)
		}
		if last, err = s.pullOne(ctx, tn, plat, auth, progress); err != nil {
			return "", err
		}
		anyNew = anyNew || !last.upToDate
	}
	progress(statusMessage(!anyNew, n))
	return last.id.String(), nil
}

// listTags lists a repository's tags (registry tag list API, all pages), trying the Docker
// Hub mirrors first as a pull does.
func (s *Service) listTags(ctx context.Context, n reference.Named, auth authn.Authenticator) ([]string, error) {
	eps, err := s.pullEndpoints(n)
	if err != nil {
		return nil, err
	}
	for _, ep := range eps {
		opts := s.endpointOptions(ctx, ep, auth)
		tags, err := remote.List(ep.reg.Repo(reference.Path(n)), opts...)
		if err == nil {
			return tags, nil
		}
		if fallBack(ctx, ep, err) {
			s.log.Debug("listing tags on mirror failed; trying the next endpoint", "mirror", ep.url, "repository", n.Name(), "err", err)
			continue
		}
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return nil, errNotFound("pull %s: repository not found: %v", reference.FamiliarName(n), err)
		}
		return nil, registryError("pull", n, err)
	}
	return nil, errNotFound("pull %s: no registry to pull from", reference.FamiliarName(n))
}

// endpointOptions are the remote options for one endpoint. A mirror gets one attempt per
// request: when it fails the next endpoint is tried rather than the mirror again.
func (s *Service) endpointOptions(ctx context.Context, ep endpoint, auth authn.Authenticator) []remote.Option {
	opts := s.remoteOptions(ctx, auth)
	if ep.mirror {
		opts = append(opts, remote.WithRetryBackoff(remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 1}))
	}
	return opts
}

// manifestSource is an image manifest and config fetched from one endpoint.
type manifestSource struct {
	ep          endpoint
	repo        name.Repository
	desc        *remote.Descriptor // what the reference resolved to (maybe an index)
	rawManifest []byte
	mt          types.MediaType
	m           ocispec.Manifest
	rawCfg      []byte
	cfg         *imageConfig
	digest      digest.Digest // of rawManifest
}

// resolve fetches and checks the manifest and config of named at one endpoint.
func (s *Service) resolve(ctx context.Context, named reference.Named, ep endpoint, plat v1.Platform, auth authn.Authenticator) (*manifestSource, error) {
	repo := ep.reg.Repo(reference.Path(named))
	var rref name.Reference
	switch r := named.(type) {
	case reference.Digested:
		rref = repo.Digest(r.Digest().String())
	case reference.Tagged:
		rref = repo.Tag(r.Tag())
	default:
		rref = repo.Tag("latest")
	}
	opts := s.endpointOptions(ctx, ep, auth)
	desc, err := remote.Get(rref, append(opts, remote.WithPlatform(plat))...)
	if err != nil {
		return nil, registryError("pull", named, err)
	}
	if desc.MediaType == types.DockerManifestSchema1 || desc.MediaType == types.DockerManifestSchema1Signed {
		return nil, errInvalid("pull %s: Docker image manifest schema 1 is not supported; push the image again with a current client", reference.FamiliarString(named))
	}
	if !desc.MediaType.IsIndex() && !desc.MediaType.IsImage() {
		return nil, errInvalid("pull %s: unsupported manifest media type %q", reference.FamiliarString(named), desc.MediaType)
	}
	img, err := desc.Image()
	if err != nil {
		if desc.MediaType.IsIndex() {
			return nil, errNotFound("no matching manifest for %s in the manifest list entries: %v", plat.String(), err)
		}
		return nil, registryError("pull", named, err)
	}
	src := &manifestSource{ep: ep, repo: repo, desc: desc}
	if src.rawManifest, err = img.RawManifest(); err != nil {
		return nil, registryError("pull", named, err)
	}
	if src.mt, err = img.MediaType(); err != nil {
		return nil, registryError("pull", named, err)
	}
	if !isManifestType(string(src.mt)) {
		return nil, errInvalid("pull %s: unsupported manifest media type %q", reference.FamiliarString(named), src.mt)
	}
	if src.m, err = parseManifest(src.rawManifest); err != nil {
		return nil, err
	}
	if src.rawCfg, err = img.RawConfigFile(); err != nil {
		return nil, registryError("pull", named, err)
	}
	if got := digest.FromBytes(src.rawCfg); got != src.m.Config.Digest {
		return nil, errInvalid("pull %s: config has digest %s, manifest says %s", reference.FamiliarString(named), got, src.m.Config.Digest)
	}
	if src.cfg, err = parseConfig(src.rawCfg); err != nil {
		return nil, err
	}
	if len(src.cfg.RootFS.DiffIDs) != len(src.m.Layers) {
		return nil, errInvalid("pull %s: manifest has %d layers but the config lists %d diff IDs", reference.FamiliarString(named), len(src.m.Layers), len(src.cfg.RootFS.DiffIDs))
	}
	src.digest = digest.FromBytes(src.rawManifest)
	return src, nil
}

// pulled is the outcome of pulling one tag or digest.
type pulled struct {
	id       digest.Digest
	upToDate bool
}

// pullOne pulls one tagged or digested reference: the manifest from the first endpoint that
// serves it (mirrors fall back to the next on any failure), then the layers from there.
func (s *Service) pullOne(ctx context.Context, named reference.Named, plat v1.Platform, auth authn.Authenticator, progress Progress) (pulled, error) {
	eps, err := s.pullEndpoints(named)
	if err != nil {
		return pulled{}, err
	}
	var src *manifestSource
	for _, ep := range eps {
		src, err = s.resolve(ctx, named, ep, plat, auth)
		if err == nil {
			break
		}
		if !fallBack(ctx, ep, err) {
			return pulled{}, err
		}
		s.log.Debug("pull from mirror failed; trying the next endpoint", "mirror", ep.url, "ref", named.String(), "err", err)
	}
	if src == nil {
		return pulled{}, err
	}
	m, cfg, rawCfg, rawManifest := src.m, src.cfg, src.rawCfg, src.rawManifest

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
	manifestDigest := src.digest
	if _, _, err := s.content.write(bytes.NewReader(rawCfg), m.Config.Digest, ls.blob); err != nil {
		return pulled{}, err
	}
	if _, _, err := s.content.write(bytes.NewReader(rawManifest), manifestDigest, ls.blob); err != nil {
		return pulled{}, err
	}
	id := m.Config.Digest
	now := time.Now().UTC()
	rec := &imageRecord{
		ID:       id,
		Manifest: ocispec.Descriptor{MediaType: string(src.mt), Digest: manifestDigest, Size: int64(len(rawManifest))},
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
	opts := s.remoteOptions(ctx, auth)
	if err := s.pullLayers(ctx, src.repo, m, cfg.RootFS.DiffIDs, rec, opts, ls, progress); err != nil {
		return pulled{}, err
	}
	for _, l := range rec.Layers {
		rec.Size += l.Size
	}

	// Names are written last, in the same transaction as the image record, with where the
	// layers came from (pushes mount them from there).
	repoDigest, err := reference.WithDigest(reference.TrimNamed(named), digest.Digest(src.desc.Digest.String()))
	if err != nil {
		return pulled{}, errInvalid("pull %s: %v", reference.FamiliarString(named), err)
	}
	layerBlobs := make([]digest.Digest, 0, len(rec.Layers))
	for _, l := range rec.Layers {
		layerBlobs = append(layerBlobs, l.Blob.Digest)
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
		if err := addSource(tx, sourceOf(named), layerBlobs...); err != nil {
			return err
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
		return pulled{}, fmt.Errorf("record image %s: %w", id, err)
	}
	progress(jsonstream.Message{Status: "Digest: " + src.desc.Digest.String()})
	s.publish(events.ActionPull, reference.FamiliarString(named), eventAttrs(rec.Labels, reference.FamiliarString(named)))
	return pulled{id: id, upToDate: upToDate}, nil
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
