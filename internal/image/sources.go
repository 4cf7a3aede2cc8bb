package image

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"go.etcd.io/bbolt"
)

// bucketSources maps a blob digest to the repositories the blob is known to be in (a JSON
// []blobSource, newest first), as Docker's distribution metadata does: a push to another
// repository of the same registry mounts the blob from one of them instead of uploading it.
var bucketSources = []byte("image-blob-sources")

// maxSources bounds the repositories remembered per blob; Docker tries at most three mounts.
const (
	maxSources     = 8
	mountAttempts  = 3
	sourceMaxBytes = 1 << 16
)

// blobSource is one repository a blob was pulled from or pushed to.
type blobSource struct {
	Registry string `json:"registry"` // the reference's domain: docker.io, localhost:5000
	Repo     string `json:"repo"`     // the repository path: library/busybox
}

func sourceOf(n reference.Named) blobSource {
	return blobSource{Registry: reference.Domain(n), Repo: reference.Path(n)}
}

func getSources(tx *bbolt.Tx, d digest.Digest) ([]blobSource, error) {
	v := tx.Bucket(bucketSources).Get([]byte(d))
	if v == nil {
		return nil, nil
	}
	var out []blobSource
	if err := json.Unmarshal(v, &out); err != nil {
		return nil, fmt.Errorf("decode sources of blob %s: %w", d, err)
	}
	return out, nil
}

// addSource records src first in the list of each blob, keeping at most maxSources.
func addSource(tx *bbolt.Tx, src blobSource, blobs ...digest.Digest) error {
	for _, d := range blobs {
		cur, err := getSources(tx, d)
		if err != nil {
			cur = nil // a damaged entry is rewritten, not fatal
		}
		next := append([]blobSource{src}, slices.DeleteFunc(cur, func(b blobSource) bool { return b == src })...)
		if len(next) > maxSources {
			next = next[:maxSources]
		}
		b, err := json.Marshal(next)
		if err != nil {
			return fmt.Errorf("encode sources of blob %s: %w", d, err)
		}
		if len(b) > sourceMaxBytes {
			continue
		}
		if err := tx.Bucket(bucketSources).Put([]byte(d), b); err != nil {
			return fmt.Errorf("record source of blob %s: %w", d, err)
		}
	}
	return nil
}

// mountCandidates are up to mountAttempts other repositories of the same registry known to
// hold blob d, most recent first.
func (s *Service) mountCandidates(d digest.Digest, target blobSource) []blobSource {
	var out []blobSource
	_ = s.db.View(func(tx *bbolt.Tx) error {
		srcs, err := getSources(tx, d)
		if err != nil {
			return err
		}
		for _, src := range srcs {
			if src.Registry == target.Registry && src.Repo != target.Repo && len(out) < mountAttempts {
				out = append(out, src)
			}
		}
		return nil
	})
	return out
}

// forgetSources drops what is known about deleted blobs.
func (s *Service) forgetSources(blobs []digest.Digest) error {
	if len(blobs) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSources)
		for _, d := range blobs {
			if err := b.Delete([]byte(d)); err != nil {
				return fmt.Errorf("forget sources of blob %s: %w", d, err)
			}
		}
		return nil
	})
}
