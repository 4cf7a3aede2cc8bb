package volume

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/fsutil"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

// bucket holds one JSON record per volume, keyed by name.
var bucket = []byte("volumes")

// DriverLocal is the only volume driver.
const DriverLocal = "local"

// tmpPrefix names directories being created or removed; leftovers are deleted by New.
const tmpPrefix = ".tmp-"

// Volume is a volume's metadata.
type Volume struct {
	Name      string            `json:"name"`
	Driver    string            `json:"driver"`
	Labels    map[string]string `json:"labels,omitempty"`
	Options   map[string]string `json:"options,omitempty"`
	CreatedAt time.Time         `json:"createdAt"`
	// Anonymous volumes were made for a container (VOLUME, -v /path) and are removed with it by
	// `rm -v` and `run --rm`.
	Anonymous bool `json:"anonymous,omitempty"`
}

// Store is the set of local volumes under <root>/volumes.
type Store struct {
	dir string
	db  *bolt.DB
	log *slog.Logger

	// mu serialises create and remove; pins are volumes that operations in flight (a container
	// being created) need and that remove must therefore refuse.
	mu    sync.Mutex
	pins  map[string]int
	inUse func(name string) []string
}

// New opens the store under root (the daemon's data root) and removes leftovers of interrupted
// creates and removes.
func New(root string, db *bolt.DB, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{dir: filepath.Join(root, "volumes"), db: db, log: log, pins: map[string]int{}}
	if err := os.MkdirAll(s.dir, 0o701); err != nil {
		return nil, fmt.Errorf("create volumes directory: %w", err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		return nil, fmt.Errorf("create volumes bucket: %w", err)
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("read volumes directory: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
				s.log.Warn("remove leftover volume directory", "dir", e.Name(), "err", err)
			}
		}
	}
	return s, nil
}

// SetInUse installs the hook that lists the containers using a volume.
func (s *Store) SetInUse(fn func(name string) []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inUse = fn
}

// Path is the directory a volume's data lives in (its mountpoint).
func (s *Store) Path(name string) string { return filepath.Join(s.dir, name, "_data") }

// Pin keeps a volume from being removed until Unpin; the volume must exist.
func (s *Store) Pin(name string) {
	s.mu.Lock()
	s.pins[name]++
	s.mu.Unlock()
}

// Unpin releases a Pin.
func (s *Store) Unpin(name string) {
	s.mu.Lock()
	if s.pins[name]--; s.pins[name] <= 0 {
		delete(s.pins, name)
	}
	s.mu.Unlock()
}

// RandomName is the name of a new anonymous volume: 64 hex digits, as Docker's.
func RandomName() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// CreateOptions are the parameters of a new volume.
type CreateOptions struct {
	Name      string // empty: a random name
	Driver    string // empty or "local"
	Labels    map[string]string
	Options   map[string]string
	Anonymous bool
}

// Create makes a volume, or returns the existing one of that name (as Docker does); created
// says which. When pin is set the volume is pinned (see Pin) before the store lock is released.
func (s *Store) Create(ctx context.Context, o CreateOptions, pin bool) (v Volume, created bool, err error) {
	if o.Driver != "" && o.Driver != DriverLocal {
		return v, false, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("volume driver %q not found: berth has only the local driver", o.Driver))
	}
	if len(o.Options) > 0 {
		keys := slices.Sorted(maps.Keys(o.Options))
		return v, false, errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("local volume options (%s) are not supported by berth yet", strings.Join(keys, ", ")))
	}
	if o.Name == "" {
		o.Name = RandomName()
	}
	if !ValidName(o.Name) {
		return v, false, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("create %s: %q includes invalid characters for a local volume name, only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", o.Name, o.Name))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, err := s.get(o.Name); err == nil {
		if pin {
			s.pins[o.Name]++
		}
		return old, false, nil
	} else if !errdefs.IsNotFound(err) {
		return v, false, err
	}
	v = Volume{Name: o.Name, Driver: DriverLocal, Labels: o.Labels, Options: o.Options, CreatedAt: time.Now().UTC().Truncate(time.Second), Anonymous: o.Anonymous}
	// Build the directory under a temporary name and move it into place before the record is
	// committed: a crash leaves either a temporary directory (removed by New) or a complete
	// directory whose record was not written (harmless: Create reuses it).
	tmp, err := os.MkdirTemp(s.dir, tmpPrefix)
	if err != nil {
		return v, false, fmt.Errorf("create volume %s: %w", o.Name, err)
	}
	if err := os.Chmod(tmp, 0o701); err != nil {
		_ = os.RemoveAll(tmp)
		return v, false, fmt.Errorf("create volume %s: %w", o.Name, err)
	}
	if err := os.Mkdir(filepath.Join(tmp, "_data"), 0o755); err != nil {
		_ = os.RemoveAll(tmp)
		return v, false, fmt.Errorf("create volume %s: %w", o.Name, err)
	}
	final := filepath.Join(s.dir, o.Name)
	_ = os.RemoveAll(final) // a directory left without a record by a crash
	if err := os.Rename(tmp, final); err != nil {
		_ = os.RemoveAll(tmp)
		return v, false, fmt.Errorf("create volume %s: %w", o.Name, err)
	}
	if err := fsutil.SyncDir(s.dir); err != nil {
		_ = os.RemoveAll(final)
		return v, false, fmt.Errorf("create volume %s: %w", o.Name, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		_ = os.RemoveAll(final)
		return v, false, err
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(v.Name), b) }); err != nil {
		_ = os.RemoveAll(final)
		return v, false, fmt.Errorf("record volume %s: %w", o.Name, err)
	}
	if pin {
		s.pins[o.Name]++
	}
	return v, true, nil
}

// Get returns a volume's metadata.
func (s *Store) Get(name string) (Volume, error) {
	return s.get(name)
}

func (s *Store) get(name string) (Volume, error) {
	var v Volume
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket).Get([]byte(name))
		if b == nil {
			return errdefs.ErrNotFound.WithMessage(fmt.Sprintf("get %s: no such volume", name))
		}
		return json.Unmarshal(b, &v)
	})
	return v, err
}

// List returns every volume, sorted by name.
func (s *Store) List() ([]Volume, error) {
	var out []Volume
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, b []byte) error {
			var v Volume
			if err := json.Unmarshal(b, &v); err != nil {
				s.log.Warn("skipping unreadable volume record", "name", string(k), "err", err)
				return nil
			}
			out = append(out, v)
			return nil
		})
	})
	slices.SortFunc(out, func(a, b Volume) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}

// Users lists the containers using a volume (through the SetInUse hook).
func (s *Store) Users(name string) []string {
	s.mu.Lock()
	fn := s.inUse
	s.mu.Unlock()
	if fn == nil {
		return nil
	}
	return fn(name)
}

// Remove deletes a volume and its data. A volume in use by a container, or pinned by an
// operation in flight, is a conflict; force only makes a missing volume not an error.
func (s *Store) Remove(ctx context.Context, name string, force bool) error {
	_, err := s.remove(ctx, name, force, false)
	return err
}

// remove deletes a volume, measuring its size first when size is set.
func (s *Store) remove(_ context.Context, name string, force, size bool) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.get(name); err != nil {
		if errdefs.IsNotFound(err) && force {
			return 0, nil
		}
		return 0, err
	}
	var users []string
	if s.inUse != nil {
		users = s.inUse(name)
	}
	if len(users) > 0 {
		return 0, errdefs.ErrConflict.WithMessage(fmt.Sprintf("remove %s: volume is in use - [%s]", name, strings.Join(users, ", ")))
	}
	if s.pins[name] > 0 {
		return 0, errdefs.ErrConflict.WithMessage(fmt.Sprintf("remove %s: volume is in use by a container being created", name))
	}
	var n int64
	if size {
		n, _ = DirSize(s.Path(name))
	}
	// Move the directory aside first, so that a failure leaves either the whole volume or none.
	final := filepath.Join(s.dir, name)
	tmp := filepath.Join(s.dir, tmpPrefix+"rm-"+RandomName()[:16])
	if err := os.Rename(final, tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("remove %s: %w", name, err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete([]byte(name)) }); err != nil {
		_ = os.Rename(tmp, final)
		return 0, fmt.Errorf("remove %s: %w", name, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		s.log.Warn("remove volume data", "volume", name, "err", err)
	}
	return n, nil
}

// Prune removes the unused volumes that keep accepts, returning their names and the space freed.
func (s *Store) Prune(ctx context.Context, keep func(Volume) bool) ([]string, uint64, error) {
	vols, err := s.List()
	if err != nil {
		return nil, 0, err
	}
	var (
		names []string
		freed uint64
	)
	for _, v := range vols {
		if !keep(v) {
			continue
		}
		n, err := s.remove(ctx, v.Name, false, true)
		if err != nil {
			continue // in use, or removed meanwhile
		}
		names = append(names, v.Name)
		freed += uint64(n)
	}
	return names, freed, nil
}

// DirSize is the size of a tree as Docker reports it: the apparent sizes of its files, hard
// links counted once.
func DirSize(dir string) (int64, error) {
	var total int64
	seen := map[[2]uint64]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if d.IsDir() {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			k := [2]uint64{st.Dev, st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += info.Size()
		return nil
	})
	return total, err
}
