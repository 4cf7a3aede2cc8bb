// Package store opens berth's node-local metadata database (bbolt). Every component keeps its own
// top-level buckets in the one file and writes only inside transactions, so a daemon killed at any
// instant leaves each record either fully written or absent. It holds no schema of its own.
package store

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// FileName is the metadata database's name under the data root.
const FileName = "meta.db"

// Open opens (creating if needed) the metadata database under root.
func Open(root string) (*bolt.DB, error) {
	if err := os.MkdirAll(root, 0o711); err != nil {
		return nil, fmt.Errorf("create data root %s: %w", root, err)
	}
	p := filepath.Join(root, FileName)
	// The daemon lock already excludes a second daemon; the timeout only guards against an
	// outside process holding the file.
	db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open metadata store %s: %w", p, err)
	}
	return db, nil
}
