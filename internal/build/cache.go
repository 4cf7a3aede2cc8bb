package build

import (
	"fmt"

	"go.etcd.io/bbolt"
)

var bucketCache = []byte("build-cache")

// BoltCache is the step cache in the daemon's metadata store: cache key -> image ID. An entry
// whose image was removed is a miss (the builder checks the image exists), so removing images
// needs no cache upkeep.
type BoltCache struct{ db *bbolt.DB }

// NewBoltCache opens (creating if needed) the builder's bucket.
func NewBoltCache(db *bbolt.DB) (*BoltCache, error) {
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketCache)
		return err
	}); err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", bucketCache, err)
	}
	return &BoltCache{db: db}, nil
}

// Get returns the image recorded for key.
func (c *BoltCache) Get(key string) (string, bool) {
	var id string
	_ = c.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketCache).Get([]byte(key)); v != nil {
			id = string(v)
		}
		return nil
	})
	return id, id != ""
}

// Put records the image built for key.
func (c *BoltCache) Put(key, imageID string) error {
	return c.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketCache).Put([]byte(key), []byte(imageID))
	})
}
