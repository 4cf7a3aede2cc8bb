package image

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/moby/moby/api/types/jsonstream"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/snapshot"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"
	"github.com/opencontainers/go-digest"
	"go.etcd.io/bbolt"
	"golang.org/x/sync/singleflight"
)

// Filters and Progress have the shapes of the API's parameter types (api.ImageBackend uses
// the same aliases), so this package needs nothing from the API layer.
type (
	Filters  = map[string][]string
	Progress = func(jsonstream.Message)
)

// Snapshotter is the part of the snapshotter (internal/snapshot/overlay) the image service uses.
type Snapshotter interface {
	Stat(ctx context.Context, key string) (snapshot.Info, error)
	Prepare(ctx context.Context, key, parent string, labels map[string]string) ([]snapshot.Mount, error)
	Commit(ctx context.Context, name, key string, labels map[string]string) error
	Remove(ctx context.Context, key string) error
	Walk(ctx context.Context, fn func(context.Context, snapshot.Info) error) error
	// UpperDir is the directory an active snapshot's changes are written to.
	UpperDir(ctx context.Context, key string) (string, error)
}

// Publisher receives image events (the daemon passes *events.Bus).
type Publisher interface {
	Publish(typ events.Type, action events.Action, id string, attrs map[string]string)
}

// Options configure New.
type Options struct {
	Root        string    // data root; blobs at Root/content/blobs/sha256/<hex>, temp files in Root/content/ingest
	DB          *bbolt.DB // shared metadata DB; this package owns the buckets "images" and "image-refs"
	Snapshotter Snapshotter
	Events      Publisher    // may be nil
	Logger      *slog.Logger // may be nil
	// InsecureRegistries are registries (host[:port] or CIDR) spoken to over plain HTTP, as
	// dockerd's --insecure-registry; localhost and 127.0.0.0/8 always are.
	InsecureRegistries []string
	// Hub is how Docker Hub images are reached: dockerd's --registry-mirror list, and the hub
	// endpoint tests replace.
	Hub HubConfig
}

// Snapshot labels and keys owned by the image service.
const (
	// labelLayer marks a committed snapshot as an image layer; its value is the diffID.
	labelLayer = "berth.image.layer.diffid"
	// labelTarSize and labelSize carry the uncompressed tar size and the unpacked size of the
	// layer, so images that share an already unpacked layer know them without re-reading it.
	labelTarSize = "berth.image.layer.tarsize"
	labelSize    = "berth.image.layer.size"
	// unpackPrefix starts the key of every temporary (active) unpack snapshot; leftovers with
	// this prefix are removed by recovery and GC.
	unpackPrefix = "berth-image-unpack-"
)

// Service is the image store and the image backend of the Docker API.
type Service struct {
	content *contentStore
	db      *bbolt.DB
	snap    Snapshotter
	events  Publisher
	log     *slog.Logger
	unpacks singleflight.Group

	// mu serialises collection (GC and targeted cleanup) with lease acquisition: a blob or
	// snapshot is deleted only while holding mu, only if no image references it and no
	// in-flight operation holds a lease on it.
	mu     sync.Mutex
	leases map[string]int

	inUseMu sync.RWMutex
	inUse   func(imageID string) bool

	insecure  []string      // --insecure-registry entries
	mirrors   []endpoint    // --registry-mirror entries, tried in order for docker.io pulls
	hub       endpoint      // Docker Hub's registry
	retryBase time.Duration // first back-off between blob attempts; tests shorten it
}

// New opens the image store and recovers from a crash: it removes ingest leftovers and
// temporary unpack snapshots, drops names that point at missing images, and runs GC.
func New(ctx context.Context, opts Options) (*Service, error) {
	if opts.Root == "" || opts.DB == nil || opts.Snapshotter == nil {
		return nil, errors.New("image.New: Root, DB and Snapshotter are required")
	}
	// Registry settings are checked first: a bad flag must change nothing on disk.
	reg := &Service{insecure: slices.Clone(opts.InsecureRegistries)}
	if err := reg.setHub(opts.Hub); err != nil {
		return nil, err
	}
	cs, err := newContentStore(opts.Root)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		content: cs,
		db:      opts.DB,
		snap:    opts.Snapshotter,
		events:  opts.Events,
		log:     log.With("component", "image"),
		leases:  map[string]int{},

		insecure: reg.insecure,
		mirrors:  reg.mirrors,
		hub:      reg.hub,
	}
	if err := initBuckets(s.db); err != nil {
		return nil, err
	}
	if err := cs.cleanIngest(); err != nil {
		return nil, err
	}
	if err := s.dropDanglingRefs(); err != nil {
		return nil, err
	}
	// Leftovers that cannot be removed now are retried by the next GC; they must not keep the
	// daemon from starting.
	if err := s.GC(ctx); err != nil {
		s.log.Warn("image store recovery: garbage collection incomplete", "err", err)
	}
	return s, nil
}

// SetInUse installs the hook that says whether a container uses an image; delete and prune
// consult it (a used image is a conflict unless forced).
func (s *Service) SetInUse(fn func(imageID string) bool) {
	s.inUseMu.Lock()
	defer s.inUseMu.Unlock()
	s.inUse = fn
}

func (s *Service) isInUse(id digest.Digest) bool {
	s.inUseMu.RLock()
	fn := s.inUse
	s.inUseMu.RUnlock()
	return fn != nil && fn(id.String())
}

func (s *Service) publish(action events.Action, id string, attrs map[string]string) {
	if s.events != nil {
		s.events.Publish(events.ImageEventType, action, id, attrs)
	}
}

// eventAttrs is Docker's attribute set for image events: the image labels plus name.
func eventAttrs(labels map[string]string, name string) map[string]string {
	a := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		a[k] = v
	}
	if name != "" {
		a["name"] = name
	}
	return a
}

// dropDanglingRefs deletes names whose image is gone. Writes never produce them; this repairs
// a DB edited by hand or by an older version.
func (s *Service) dropDanglingRefs() error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		var bad [][]byte
		err := tx.Bucket(bucketRefs).ForEach(func(k, _ []byte) error {
			r, err := getRef(tx, string(k))
			if err != nil || r == nil || tx.Bucket(bucketImages).Get([]byte(r.ID)) == nil {
				bad = append(bad, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range bad {
			s.log.Warn("dropping name of missing image", "name", string(k))
			if err := tx.Bucket(bucketRefs).Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// lease pins blobs and snapshots for one operation so that concurrent cleanup leaves them alone.
type lease struct {
	s    *Service
	keys []string
}

func (s *Service) newLease() *lease { return &lease{s: s} }

func blobKey(d digest.Digest) string { return "blob:" + d.String() }
func snapKey(k string) string        { return "snap:" + k }

// pin and unpin protect a key without the cleanup that lease.release does.
func (s *Service) pin(key string) {
	s.mu.Lock()
	s.leases[key]++
	s.mu.Unlock()
}

func (s *Service) unpin(key string) {
	s.mu.Lock()
	if s.leases[key]--; s.leases[key] <= 0 {
		delete(s.leases, key)
	}
	s.mu.Unlock()
}

func (l *lease) add(key string) {
	l.s.mu.Lock()
	l.s.leases[key]++
	l.s.mu.Unlock()
	l.keys = append(l.keys, key)
}

func (l *lease) blob(d digest.Digest) { l.add(blobKey(d)) }
func (l *lease) snap(k string)        { l.add(snapKey(k)) }

// release drops the lease and deletes whatever it pinned that no image references now: the
// archive's metadata files after a load, everything after a failed one.
func (l *lease) release(ctx context.Context) {
	var blobs []digest.Digest
	var snaps []string
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range l.keys {
		s.leases[k]--
		if s.leases[k] <= 0 {
			delete(s.leases, k)
		}
		if d, ok := strings.CutPrefix(k, "blob:"); ok {
			blobs = append(blobs, digest.Digest(d))
		} else if sk, ok := strings.CutPrefix(k, "snap:"); ok {
			snaps = append(snaps, sk)
		}
	}
	// Snapshots were leased base first; remove children first.
	for i, j := 0, len(snaps)-1; i < j; i, j = i+1, j-1 {
		snaps[i], snaps[j] = snaps[j], snaps[i]
	}
	if _, err := s.collectLocked(ctx, blobs, snaps); err != nil {
		s.log.Warn("cleanup after image operation", "err", err)
	}
}

// marks is the set of blobs and snapshots referenced by images.
type marks struct {
	blobs map[digest.Digest]struct{}
	snaps map[string]struct{}
}

func (s *Service) mark() (marks, error) {
	m := marks{blobs: map[digest.Digest]struct{}{}, snaps: map[string]struct{}{}}
	err := s.db.View(func(tx *bbolt.Tx) error {
		imgs, err := allImages(tx)
		if err != nil {
			return err
		}
		for _, r := range imgs {
			m.blobs[r.Manifest.Digest] = struct{}{}
			m.blobs[r.Config.Digest] = struct{}{}
			for _, l := range r.Layers {
				m.blobs[l.Blob.Digest] = struct{}{}
				m.snaps[l.ChainID.String()] = struct{}{}
			}
		}
		return nil
	})
	return m, err
}

// collectLocked deletes the given blobs and snapshots (children before parents) that are neither
// referenced nor leased. s.mu must be held. It returns the snapshots it removed.
func (s *Service) collectLocked(ctx context.Context, blobs []digest.Digest, snaps []string) ([]string, error) {
	if len(blobs) == 0 && len(snaps) == 0 {
		return nil, nil
	}
	m, err := s.mark()
	if err != nil {
		return nil, err
	}
	var errs []error
	var deleted []digest.Digest
	for _, d := range blobs {
		if _, ok := m.blobs[d]; ok || s.leases[blobKey(d)] > 0 {
			continue
		}
		if err := s.content.delete(d); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, d)
	}
	if err := s.forgetSources(deleted); err != nil {
		errs = append(errs, err)
	}
	var removed []string
	seen := map[string]bool{}
	for _, k := range snaps {
		if _, ok := m.snaps[k]; ok || s.leases[snapKey(k)] > 0 || seen[k] {
			continue
		}
		seen[k] = true
		if err := s.snap.Remove(ctx, k); err != nil {
			switch {
			case errdefs.IsNotFound(err):
			case errdefs.IsFailedPrecondition(err):
				s.log.Debug("snapshot still has children; keeping it", "key", k)
			default:
				errs = append(errs, fmt.Errorf("remove snapshot %s: %w", k, err))
			}
			continue
		}
		removed = append(removed, k)
	}
	return removed, errors.Join(errs...)
}

// GC removes blobs and snapshots that no image references: unreferenced blobs, committed layer
// snapshots of this service, and leftover temporary unpack snapshots. Snapshots that still have
// children (a container's rootfs) are kept. In-flight operations are protected by their leases.
func (s *Service) GC(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var blobs []digest.Digest
	if err := s.content.walk(func(d digest.Digest) error {
		blobs = append(blobs, d)
		return nil
	}); err != nil {
		return err
	}
	type node struct{ parent string }
	cands := map[string]node{}
	err := s.snap.Walk(ctx, func(_ context.Context, info snapshot.Info) error {
		_, layer := info.Labels[labelLayer]
		if layer || strings.HasPrefix(info.Name, unpackPrefix) {
			cands[info.Name] = node{parent: info.Parent}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk snapshots: %w", err)
	}
	// Order children before parents: a snapshot comes after everything that names it parent.
	var order []string
	depth := map[string]int{}
	var depthOf func(k string, n int) int
	depthOf = func(k string, n int) int {
		if d, ok := depth[k]; ok {
			return d
		}
		c, ok := cands[k]
		if !ok || n > len(cands) {
			return 0
		}
		d := 1 + depthOf(c.parent, n+1)
		depth[k] = d
		return d
	}
	for k := range cands {
		depthOf(k, 0)
		order = append(order, k)
	}
	sortByDepthDesc(order, depth)
	_, err = s.collectLocked(ctx, blobs, order)
	return err
}

func sortByDepthDesc(keys []string, depth map[string]int) {
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(depth[b], depth[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
