package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// GCOptions configures a garbage collection.
type GCOptions struct {
	// Root is the registry root, as given to `berth registry serve --root`.
	Root string
	// DeleteUntagged also deletes manifests that no tag reaches (directly, through an index,
	// or as a referrer of a reached manifest).
	DeleteUntagged bool
	// DryRun reports what would be deleted and changes nothing.
	DryRun bool
	// Logger receives one debug line per deletion; nil discards.
	Logger *slog.Logger
}

// GCResult lists what a garbage collection deleted (or, in a dry run, would delete).
type GCResult struct {
	// Manifests are deleted manifests as "repository@digest".
	Manifests []string
	// Links are blob links removed from repositories, as "repository@digest".
	Links []string
	// Blobs are digests whose content was removed from disk.
	Blobs []string
	// Bytes is the size of the removed content.
	Bytes int64
	// Uploads is the number of stale upload sessions removed.
	Uploads int
}

// gcLockTimeout is how long the collector waits for the database lock. A running server
// holds the lock for its lifetime, so the collector refuses to run next to one instead of
// racing with uploads that have renamed content into place but not linked it yet.
const gcLockTimeout = 200 * time.Millisecond

// GarbageCollect removes unreferenced content from a registry root. It marks every manifest
// that is kept (all of them, or with DeleteUntagged those reachable from tags), the content
// they reference (config, layers, index children, referrers), and sweeps every other blob,
// blob link and stale upload session.
//
// It must not run concurrently with a server on the same root, and refuses to: it needs the
// exclusive bbolt lock the server holds. Stop the server, collect, start it again.
func GarbageCollect(ctx context.Context, opts GCOptions) (GCResult, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var res GCResult
	st, err := openStore(opts.Root, gcLockTimeout, log)
	if err != nil {
		return res, fmt.Errorf("garbage-collect needs the registry to itself, stop the server first: %w", err)
	}
	defer st.close()

	marked := map[string]bool{}
	mark := func(tx *bolt.Tx) error {
		repos := tx.Bucket([]byte(bucketRepos))
		var names []string
		if err := repos.ForEach(func(k, _ []byte) error {
			names = append(names, string(k))
			return nil
		}); err != nil {
			return err
		}
		for _, name := range names {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := gcRepo(repos.Bucket([]byte(name)), name, opts, marked, &res); err != nil {
				return fmt.Errorf("repository %s: %w", name, err)
			}
		}
		return nil
	}
	if opts.DryRun {
		err = st.db.View(mark)
	} else {
		err = st.db.Update(mark)
	}
	if err != nil {
		return res, fmt.Errorf("garbage collect: mark: %w", err)
	}

	// Sweep content. Metadata was committed first: a crash from here on leaves only
	// unreferenced files, which the next collection removes.
	for _, alg := range []string{algSHA256, algSHA512} {
		dir := filepath.Join(st.root, blobsDir, alg)
		entries, err := os.ReadDir(dir)
		if err != nil {
			return res, fmt.Errorf("garbage collect: %w", err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			dgst := alg + ":" + e.Name()
			if marked[dgst] || !validDigest(dgst) {
				continue
			}
			if fi, err := e.Info(); err == nil {
				res.Bytes += fi.Size()
			}
			res.Blobs = append(res.Blobs, dgst)
			log.Debug("registry gc: blob", "digest", dgst, "dry-run", opts.DryRun)
			if !opts.DryRun {
				if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !os.IsNotExist(err) {
					return res, fmt.Errorf("garbage collect: %w", err)
				}
			}
		}
	}
	if !opts.DryRun {
		n, err := st.recover(time.Now(), uploadTTL)
		if err != nil {
			return res, fmt.Errorf("garbage collect: %w", err)
		}
		res.Uploads = n
	}
	sort.Strings(res.Blobs)
	return res, nil
}

// gcRepo marks what one repository keeps and (unless a dry run) deletes its unkept
// manifests and blob links.
func gcRepo(rb *bolt.Bucket, name string, opts GCOptions, marked map[string]bool, res *GCResult) error {
	mans := sub(rb, bucketManifests)
	refs := sub(rb, bucketReferrers)
	recs := map[string]manifestRecord{}
	if err := mans.ForEach(func(k, v []byte) error {
		var rec manifestRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("decode manifest record %s: %w", k, err)
		}
		recs[string(k)] = rec
		return nil
	}); err != nil {
		return err
	}
	// roots
	var work []string
	if opts.DeleteUntagged {
		if err := sub(rb, bucketTags).ForEach(func(_, v []byte) error {
			work = append(work, string(v))
			return nil
		}); err != nil {
			return err
		}
	} else {
		for d := range recs {
			work = append(work, d)
		}
	}
	// closure over index children and referrers
	kept := map[string]bool{}
	for len(work) > 0 {
		d := work[len(work)-1]
		work = work[:len(work)-1]
		rec, ok := recs[d]
		if !ok || kept[d] {
			continue
		}
		kept[d] = true
		work = append(work, rec.Manifests...)
		if rs := refs.Bucket([]byte(d)); rs != nil {
			if err := rs.ForEach(func(k, _ []byte) error {
				work = append(work, string(k))
				return nil
			}); err != nil {
				return err
			}
		}
	}
	keptBlobs := map[string]bool{}
	var drop []string
	for d, rec := range recs {
		if !kept[d] {
			drop = append(drop, d)
			continue
		}
		marked[d] = true
		for _, b := range rec.Blobs {
			marked[b] = true
			keptBlobs[b] = true
		}
	}
	sort.Strings(drop)
	for _, d := range drop {
		res.Manifests = append(res.Manifests, name+"@"+d)
		if opts.DryRun {
			continue
		}
		if err := deleteManifestTx(rb, d); err != nil {
			return err
		}
	}
	// Blob links no kept manifest uses. The server is not running, so no push is between
	// uploading its layers and its manifest.
	links := sub(rb, bucketBlobs)
	var unlink [][]byte
	if err := links.ForEach(func(k, _ []byte) error {
		if !keptBlobs[string(k)] {
			unlink = append(unlink, append([]byte(nil), k...))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, k := range unlink {
		res.Links = append(res.Links, name+"@"+string(k))
		if opts.DryRun {
			continue
		}
		if err := links.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
