package image

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/internal/archive"
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

// storedBlob is a blob of the content store as a go-containerregistry layer, so that it is
// uploaded byte for byte (its digest is the one the stored manifest names).
type storedBlob struct {
	s      *Service
	desc   ocispec.Descriptor
	diffID digest.Digest
}

func (b storedBlob) Digest() (v1.Hash, error) { return v1.NewHash(b.desc.Digest.String()) }
func (b storedBlob) DiffID() (v1.Hash, error) {
	if b.diffID == "" {
		return b.Digest()
	}
	return v1.NewHash(b.diffID.String())
}
func (b storedBlob) Size() (int64, error) { return b.desc.Size, nil }
func (b storedBlob) MediaType() (types.MediaType, error) {
	return types.MediaType(b.desc.MediaType), nil
}
func (b storedBlob) Compressed() (io.ReadCloser, error) { return b.s.content.open(b.desc.Digest) }

func (b storedBlob) Uncompressed() (io.ReadCloser, error) {
	f, err := b.s.content.open(b.desc.Digest)
	if err != nil {
		return nil, err
	}
	dr, _, err := archive.Decompress(bufio.NewReader(f))
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{dr, closers{dr, f}}, nil
}

type closers []io.Closer

func (c closers) Close() error {
	for _, x := range c {
		_ = x.Close()
	}
	return nil
}

// rawManifest is a stored manifest as go-containerregistry's Taggable.
type rawManifest struct {
	b  []byte
	mt string
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.b, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.MediaType(m.mt), nil }

// pushAux is the aux message Docker sends at the end of a push.
type pushAux struct {
	Tag    string `json:"Tag"`
	Digest string `json:"Digest"`
	Size   int    `json:"Size"`
}

// Push uploads stored images: ref with a tag pushes that tag; a bare repository name pushes
// every local tag of it, as dockerd does when the API's tag parameter is empty (`docker push
// --all-tags`). For each tag the layer blobs and config go up as stored, then the stored
// manifest, so every digest is the one the image was pulled or built with. Blobs the
// repository already has are not sent; blobs known to be in another repository of the same
// registry are mounted from there ("Mounted from ..."). The manifest digest is recorded as the
// image's RepoDigest for the repository.
func (s *Service) Push(ctx context.Context, ref string, auth authn.Authenticator, progress Progress) error {
	progress = syncProgress(progress)
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return errInvalid("invalid reference format: %v", err)
	}
	if _, ok := n.(reference.Digested); ok {
		return errInvalid("cannot push a digest reference: %s", ref)
	}
	type job struct {
		tag reference.NamedTagged
		rec *imageRecord
	}
	var jobs []job
	if err := s.db.View(func(tx *bbolt.Tx) error {
		var tags []reference.NamedTagged
		if t, ok := n.(reference.NamedTagged); ok {
			tags = []reference.NamedTagged{t}
		} else {
			var err error
			if tags, err = localTags(tx, n); err != nil {
				return err
			}
		}
		for _, t := range tags {
			r, err := getRef(tx, t.String())
			if err != nil || r == nil {
				return err
			}
			rec, err := getImage(tx, r.ID)
			if err != nil {
				return err
			}
			if rec != nil {
				jobs = append(jobs, job{tag: t, rec: rec})
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if len(jobs) == 0 {
		return errNotFound("An image does not exist locally with the tag: %s", reference.FamiliarName(n))
	}
	reg, err := s.registryFor(reference.Domain(n))
	if err != nil {
		return err
	}
	repo := reg.Repo(reference.Path(n))
	progress(jsonstream.Message{Status: "The push refers to repository [" + n.Name() + "]"})
	for _, j := range jobs {
		if err := s.pushTag(ctx, j.tag, repo, j.rec, auth, progress); err != nil {
			return err
		}
	}
	return nil
}

// localTags are the tags of repository n in the store, sorted.
func localTags(tx *bbolt.Tx, n reference.Named) ([]reference.NamedTagged, error) {
	var out []reference.NamedTagged
	prefix := []byte(n.Name() + ":")
	c := tx.Bucket(bucketRefs).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		r, err := reference.ParseNormalizedNamed(string(k))
		if err != nil {
			continue // not a name this package wrote
		}
		if t, ok := r.(reference.NamedTagged); ok && r.Name() == n.Name() {
			if _, digested := r.(reference.Digested); !digested {
				out = append(out, t)
			}
		}
	}
	return out, nil
}

// pushTag uploads one stored image as tag to repo (the registry's view of the tag's repository).
func (s *Service) pushTag(ctx context.Context, tag reference.NamedTagged, repo name.Repository, rec *imageRecord, auth authn.Authenticator, progress Progress) error {
	ls := s.newLease()
	defer ls.release(context.WithoutCancel(ctx))
	ls.blob(rec.Manifest.Digest)
	ls.blob(rec.Config.Digest)
	for _, l := range rec.Layers {
		ls.blob(l.Blob.Digest)
	}
	mb, err := s.content.readAll(rec.Manifest.Digest, maxMetaSize)
	if err != nil {
		return fmt.Errorf("push %s: read manifest: %w", reference.FamiliarString(tag), err)
	}
	opts := s.remoteOptions(ctx, auth)
	target := sourceOf(tag)

	// Docker lists layers top first.
	for i := len(rec.Layers) - 1; i >= 0; i-- {
		progress(jsonstream.Message{ID: shortID(rec.Layers[i].DiffID), Status: "Preparing"})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(pushJobs)
	for i := len(rec.Layers) - 1; i >= 0; i-- {
		l := rec.Layers[i]
		g.Go(func() error {
			b := storedBlob{s: s, desc: l.Blob, diffID: l.DiffID}
			return s.pushBlob(gctx, repo, b, shortID(l.DiffID), s.mountCandidates(l.Blob.Digest, target), opts, progress)
		})
	}
	if err := g.Wait(); err != nil {
		return registryError("push", tag, err)
	}
	if err := s.pushBlob(ctx, repo, storedBlob{s: s, desc: rec.Config}, "", nil, opts, nil); err != nil {
		return registryError("push", tag, err)
	}
	if err := remote.Put(repo.Tag(tag.Tag()), rawManifest{b: mb, mt: rec.Manifest.MediaType}, opts...); err != nil {
		return registryError("push", tag, err)
	}
	md := digest.FromBytes(mb)
	progress(jsonstream.Message{Status: fmt.Sprintf("%s: digest: %s size: %d", tag.Tag(), md, len(mb))})
	if aux, err := json.Marshal(pushAux{Tag: tag.Tag(), Digest: md.String(), Size: len(mb)}); err == nil {
		raw := json.RawMessage(aux)
		progress(jsonstream.Message{Aux: &raw})
	}

	repoDigest, err := reference.WithDigest(reference.TrimNamed(tag), md)
	if err != nil {
		return errInvalid("push %s: %v", reference.FamiliarString(tag), err)
	}
	layerBlobs := make([]digest.Digest, 0, len(rec.Layers))
	for _, l := range rec.Layers {
		layerBlobs = append(layerBlobs, l.Blob.Digest)
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		if err := addSource(tx, target, layerBlobs...); err != nil {
			return err
		}
		if cur, err := getImage(tx, rec.ID); err != nil || cur == nil {
			return err // removed meanwhile: nothing to name
		}
		return putRef(tx, repoDigest.String(), refRecord{ID: rec.ID, Created: time.Now().UTC()})
	}); err != nil {
		return fmt.Errorf("record repo digest of %s: %w", rec.ID, err)
	}
	s.publish(events.ActionPush, reference.FamiliarString(tag), eventAttrs(rec.Labels, reference.FamiliarString(tag)))
	return nil
}

// errNotMounted stops go-containerregistry's upload after a refused mount: mountBlob only
// mounts; pushBlob uploads with progress.
var errNotMounted = errors.New("registry did not mount the blob")

// mountAttempt lets exactly one upload initiation through, the cross-repository mount
// (POST .../blobs/uploads/?mount=&from=), and records whether the registry mounted the blob
// (201 Created). A 202 opens an upload session instead: it is cancelled, and every later
// upload request fails with errNotMounted. Other requests (ping, token fetches, HEAD) pass,
// and so does a 401, which the auth transport above answers by retrying with a new token.
type mountAttempt struct {
	inner   http.RoundTripper
	mounted atomic.Bool
	refused atomic.Bool
}

func (m *mountAttempt) RoundTrip(req *http.Request) (*http.Response, error) {
	write := req.Method != http.MethodGet && req.Method != http.MethodHead
	isMount := write && strings.Contains(req.URL.Path, "/blobs/uploads/") && req.URL.Query().Get("mount") != ""
	if write && (m.refused.Load() || m.mounted.Load() || (!isMount && strings.Contains(req.URL.Path, "/blobs/uploads/"))) {
		return nil, errNotMounted
	}
	resp, err := m.inner.RoundTrip(req)
	if err != nil || !isMount {
		return resp, err
	}
	switch resp.StatusCode {
	case http.StatusCreated:
		m.mounted.Store(true)
	case http.StatusUnauthorized:
	case http.StatusAccepted:
		m.refused.Store(true)
		m.cancelUpload(req, resp)
	default:
		m.refused.Store(true)
	}
	return resp, nil
}

// cancelUpload deletes the upload session a refused mount opened (best effort: registries
// expire abandoned sessions anyway).
func (m *mountAttempt) cancelUpload(req *http.Request, resp *http.Response) {
	loc, err := resp.Location()
	if err != nil {
		return
	}
	del, err := http.NewRequestWithContext(req.Context(), http.MethodDelete, loc.String(), nil)
	if err != nil {
		return
	}
	if a := req.Header.Get("Authorization"); a != "" && loc.Host == req.URL.Host {
		del.Header.Set("Authorization", a)
	}
	if r, err := m.inner.RoundTrip(del); err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<16))
		_ = r.Body.Close()
	}
}

// pushBlob uploads one blob unless the repository has it, first trying to mount it from each
// candidate repository of the same registry. id names it in progress messages (empty: no
// messages).
func (s *Service) pushBlob(ctx context.Context, repo name.Repository, b storedBlob, id string, candidates []blobSource, opts []remote.Option, progress Progress) error {
	if progress == nil {
		progress = func(jsonstream.Message) {}
	}
	ropts := append(append([]remote.Option(nil), opts...), remote.WithContext(ctx))
	l, err := remote.Layer(repo.Digest(b.desc.Digest.String()), ropts...)
	if err == nil {
		if e, ok := l.(interface{ Exists() (bool, error) }); ok {
			if exists, err := e.Exists(); err == nil && exists {
				if id != "" {
					progress(jsonstream.Message{ID: id, Status: "Layer already exists"})
				}
				return nil
			}
		}
	}
	for _, c := range candidates {
		if mounted, err := s.mountBlob(ctx, repo, b, c, ropts); err != nil {
			s.log.Debug("cross-repository mount failed", "blob", b.desc.Digest, "from", c.Repo, "to", repo.RepositoryStr(), "err", err)
		} else if mounted {
			if id != "" {
				progress(jsonstream.Message{ID: id, Status: "Mounted from " + c.Repo})
			}
			return nil
		}
	}
	return s.withRetries(ctx, func() error {
		updates := make(chan v1.Update, 16)
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			for u := range updates {
				if id != "" && u.Error == nil {
					progress(jsonstream.Message{ID: id, Status: "Pushing", Progress: &jsonstream.Progress{Current: u.Complete, Total: u.Total}})
				}
			}
		}()
		// WriteLayer closes updates before it returns (it fails earlier only on invalid
		// options, which these are not), so waiting for the drain cannot hang.
		err := remote.WriteLayer(repo, b, append(ropts, remote.WithProgress(updates))...)
		<-drained
		if err != nil {
			return err
		}
		if id != "" {
			progress(jsonstream.Message{ID: id, Status: "Pushed"})
		}
		return nil
	}, nil)
}

// mountBlob asks the registry to mount blob b into repo from repository src of the same
// registry, and reports whether it did. Nothing is uploaded here.
func (s *Service) mountBlob(ctx context.Context, repo name.Repository, b storedBlob, src blobSource, ropts []remote.Option) (bool, error) {
	from := repo.Registry.Repo(src.Repo)
	obs := &mountAttempt{inner: remote.DefaultTransport}
	ml := &remote.MountableLayer{Layer: b, Reference: from.Digest(b.desc.Digest.String())}
	opts := append(append([]remote.Option(nil), ropts...), remote.WithTransport(obs), remote.WithRetryBackoff(remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 1}))
	err := remote.WriteLayer(repo, ml, opts...)
	if obs.mounted.Load() {
		return true, nil
	}
	if err == nil || errors.Is(err, errNotMounted) || obs.refused.Load() {
		return false, nil
	}
	return false, err
}
