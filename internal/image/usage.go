package image

import (
	"context"

	"github.com/opencontainers/go-digest"
	"go.etcd.io/bbolt"
)

// Usage is what `system df` needs to know about layer sharing.
type Usage struct {
	// LayersSize is the unpacked size of all layers, each counted once.
	LayersSize int64
	// SharedSize maps an image ID to the size of its layers that other images use too.
	SharedSize map[string]int64
}

// DiskUsage computes layer sharing across all images.
func (s *Service) DiskUsage(ctx context.Context) (Usage, error) {
	u := Usage{SharedSize: map[string]int64{}}
	err := s.db.View(func(tx *bbolt.Tx) error {
		imgs, err := allImages(tx)
		if err != nil {
			return err
		}
		users := map[digest.Digest]int{}
		sizes := map[digest.Digest]int64{}
		for _, r := range imgs {
			for _, l := range r.Layers {
				users[l.ChainID]++
				sizes[l.ChainID] = l.Size
			}
		}
		for _, n := range sizes {
			u.LayersSize += n
		}
		for _, r := range imgs {
			var shared int64
			for _, l := range r.Layers {
				if users[l.ChainID] > 1 {
					shared += l.Size
				}
			}
			u.SharedSize[r.ID.String()] = shared
		}
		return nil
	})
	return u, err
}
