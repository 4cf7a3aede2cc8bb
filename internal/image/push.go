package image

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
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

// Push uploads a stored image under ref (tag defaults to latest): the layer blobs and config as
// stored, then the stored manifest, so every digest is the one the image was pulled or built
// with. Blobs the registry already has are not sent. The manifest digest is recorded as the
// image's RepoDigest for the repository.
func (s *Service) Push(ctx context.Context, ref string, auth authn.Authenticator, progress Progress) error {
	progress = syncProgress(progress)
	named, rref, err := s.normalizeRef(ref)
	if err != nil {
		return err
	}
	tag, ok := rref.(name.Tag)
	if !ok {
		return errInvalid("cannot push a digest reference: %s", ref)
	}
	var rec *imageRecord
	if err := s.db.View(func(tx *bbolt.Tx) error {
		r, err := getRef(tx, named.String())
		if err != nil || r == nil {
			return err
		}
		rec, err = getImage(tx, r.ID)
		return err
	}); err != nil {
		return err
	}
	if rec == nil {
		return errNotFound("An image does not exist locally with the tag: %s", reference.FamiliarName(named))
	}
	ls := s.newLease()
	defer ls.release(context.WithoutCancel(ctx))
	ls.blob(rec.Manifest.Digest)
	ls.blob(rec.Config.Digest)
	for _, l := range rec.Layers {
		ls.blob(l.Blob.Digest)
	}
	mb, err := s.content.readAll(rec.Manifest.Digest, maxMetaSize)
	if err != nil {
		return fmt.Errorf("push %s: read manifest: %w", reference.FamiliarString(named), err)
	}
	progress(jsonstream.Message{Status: "The push refers to repository [" + named.Name() + "]"})
	opts := s.remoteOptions(ctx, auth)
	repo := tag.Context()

	// Docker lists layers top first.
	for i := len(rec.Layers) - 1; i >= 0; i-- {
		progress(jsonstream.Message{ID: shortID(rec.Layers[i].DiffID), Status: "Preparing"})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(pushJobs)
	for i := len(rec.Layers) - 1; i >= 0; i-- {
		l := rec.Layers[i]
		g.Go(func() error {
			return s.pushBlob(gctx, repo, storedBlob{s: s, desc: l.Blob, diffID: l.DiffID}, shortID(l.DiffID), opts, progress)
		})
	}
	if err := g.Wait(); err != nil {
		return registryError("push", named, err)
	}
	if err := s.pushBlob(ctx, repo, storedBlob{s: s, desc: rec.Config}, "", opts, nil); err != nil {
		return registryError("push", named, err)
	}
	if err := remote.Put(tag, rawManifest{b: mb, mt: rec.Manifest.MediaType}, opts...); err != nil {
		return registryError("push", named, err)
	}
	md := digest.FromBytes(mb)
	progress(jsonstream.Message{Status: fmt.Sprintf("%s: digest: %s size: %d", tag.TagStr(), md, len(mb))})
	if aux, err := json.Marshal(pushAux{Tag: tag.TagStr(), Digest: md.String(), Size: len(mb)}); err == nil {
		raw := json.RawMessage(aux)
		progress(jsonstream.Message{Aux: &raw})
	}

	repoDigest, err := reference.WithDigest(reference.TrimNamed(named), md)
	if err != nil {
		return errInvalid("push %s: %v", reference.FamiliarString(named), err)
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		if cur, err := getImage(tx, rec.ID); err != nil || cur == nil {
			return err // removed meanwhile: nothing to name
		}
		return putRef(tx, repoDigest.String(), refRecord{ID: rec.ID, Created: time.Now().UTC()})
	}); err != nil {
		return fmt.Errorf("record repo digest of %s: %w", rec.ID, err)
	}
	s.publish(events.ActionPush, reference.FamiliarString(named), eventAttrs(rec.Labels, reference.FamiliarString(named)))
	return nil
}

// pushBlob uploads one blob unless the repository has it. id names it in progress messages
// (empty: no messages).
func (s *Service) pushBlob(ctx context.Context, repo name.Repository, b storedBlob, id string, opts []remote.Option, progress Progress) error {
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
