package image

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
)

// Top-level buckets of the shared metadata DB owned by this package.
var (
	// bucketImages maps an image ID ("sha256:<hex>", the config digest) to an imageRecord.
	bucketImages = []byte("images")
	// bucketRefs maps a fully qualified name (docker.io/library/busybox:latest, or
	// name@sha256:...) to a refRecord. A name is written only in the same transaction as, or
	// after, the image it points at, and deleted with it.
	bucketRefs = []byte("image-refs")
)

// imageRecord is what the store keeps per image besides its blobs.
type imageRecord struct {
	ID          digest.Digest      `json:"id"`
	Manifest    ocispec.Descriptor `json:"manifest"`
	Config      ocispec.Descriptor `json:"config"`
	Layers      []layerRecord      `json:"layers"`
	Created     time.Time          `json:"created,omitzero"` // from the config
	Added       time.Time          `json:"added"`
	LastTagTime time.Time          `json:"lastTagTime,omitzero"`
	Labels      map[string]string  `json:"labels,omitempty"` // config labels, for list filters
	Size        int64              `json:"size"`             // sum of unpacked layer sizes
}

// layerRecord is one layer of an image.
type layerRecord struct {
	Blob    ocispec.Descriptor `json:"blob"`    // the blob as stored (maybe compressed)
	DiffID  digest.Digest      `json:"diffID"`  // digest of the uncompressed tar
	ChainID digest.Digest      `json:"chainID"` // name of the committed snapshot
	TarSize int64              `json:"tarSize"` // size of the uncompressed tar
	Size    int64              `json:"size"`    // unpacked size reported by the applier
}

type refRecord struct {
	ID      digest.Digest `json:"id"`
	Created time.Time     `json:"created"`
}

func initBuckets(db *bbolt.DB) error {
	return db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketImages, bucketRefs, bucketSources} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	})
}

func getImage(tx *bbolt.Tx, id digest.Digest) (*imageRecord, error) {
	v := tx.Bucket(bucketImages).Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	var r imageRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode image record %s: %w", id, err)
	}
	return &r, nil
}

func putImage(tx *bbolt.Tx, r *imageRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode image record: %w", err)
	}
	return tx.Bucket(bucketImages).Put([]byte(r.ID), b)
}

func allImages(tx *bbolt.Tx) ([]*imageRecord, error) {
	var out []*imageRecord
	err := tx.Bucket(bucketImages).ForEach(func(k, v []byte) error {
		var r imageRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decode image record %s: %w", k, err)
		}
		out = append(out, &r)
		return nil
	})
	return out, err
}

func getRef(tx *bbolt.Tx, name string) (*refRecord, error) {
	v := tx.Bucket(bucketRefs).Get([]byte(name))
	if v == nil {
		return nil, nil
	}
	var r refRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode name record %s: %w", name, err)
	}
	return &r, nil
}

func putRef(tx *bbolt.Tx, name string, r refRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode name record: %w", err)
	}
	return tx.Bucket(bucketRefs).Put([]byte(name), b)
}

func deleteRef(tx *bbolt.Tx, name string) error {
	return tx.Bucket(bucketRefs).Delete([]byte(name))
}

// namedRef is one name of an image.
type namedRef struct {
	ref reference.Named
	rec refRecord
}

// refsByImage returns all names grouped by image ID, each group sorted as Docker sorts them
// (by familiar string).
func refsByImage(tx *bbolt.Tx) (map[digest.Digest][]namedRef, error) {
	out := map[digest.Digest][]namedRef{}
	err := tx.Bucket(bucketRefs).ForEach(func(k, v []byte) error {
		var r refRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decode name record %s: %w", k, err)
		}
		n, err := reference.ParseNormalizedNamed(string(k))
		if err != nil {
			return nil // unparsable names cannot have been written by us; skip them
		}
		out[r.ID] = append(out[r.ID], namedRef{ref: n, rec: r})
		return nil
	})
	for _, l := range out {
		sort.Slice(l, func(i, j int) bool {
			return reference.FamiliarString(l[i].ref) < reference.FamiliarString(l[j].ref)
		})
	}
	return out, err
}

// refsOf returns the names of one image.
func refsOf(tx *bbolt.Tx, id digest.Digest) ([]namedRef, error) {
	all, err := refsByImage(tx)
	if err != nil {
		return nil, err
	}
	return all[id], nil
}

// repoTagsDigests splits names into Docker's RepoTags and RepoDigests (familiar form).
func repoTagsDigests(refs []namedRef) (tags, digests []string) {
	tags, digests = []string{}, []string{}
	for _, r := range refs {
		switch r.ref.(type) {
		case reference.Canonical:
			digests = append(digests, reference.FamiliarString(r.ref))
		case reference.NamedTagged:
			tags = append(tags, reference.FamiliarString(r.ref))
		}
	}
	return tags, digests
}
