// Package overlay is berth's overlayfs snapshotter: each snapshot is a directory
// root/snapshots/<id>/{fs,work}; an active snapshot mounts as an overlay of its parents' fs dirs
// (lower) under its own fs dir (upper). Metadata (ids, kinds, parents, labels, times) lives in the
// caller's bbolt database, in the top-level bucket "snapshots", and is only changed in
// transactions.
//
// It does not mount anything itself (snapshot.MountAll does) and does not unpack layers (the image
// package applies layers into UpperDir). It must not touch files outside root/snapshots.
//
// Crash consistency: a snapshot directory is created under a temporary name and renamed to its id
// inside the transaction that records it; removal renames to "rm-<id>" in the transaction that
// forgets it. Directories without a record are garbage from an interrupted operation, and
// Cleanup (run by New) deletes them.
//
// Recycling: a removed snapshot's directory is emptied and kept as "spare-<n>" (up to
// maxSpares), and the next Prepare renames a spare into place instead of making three new
// directories. Making and deleting inodes is what a container run costs most on some
// filesystems (ext4 without a journal scans every inode freed in the last 30 s at each
// allocation); a rename costs neither. Spares are known only in memory: Cleanup deletes those a
// previous process left.
package overlay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/fsutil"
	"github.com/berth-dev/berth/internal/snapshot"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

var (
	bucketName     = []byte("snapshots")
	keysBucket     = []byte("keys")     // key or name -> JSON record
	childrenBucket = []byte("children") // parent \x00 child -> nothing, for Remove's check
)

// maxDepth bounds parent chains; overlayfs itself cannot stack more than 500 layers.
const maxDepth = 500

// record is the stored metadata of one snapshot.
type record struct {
	ID      uint64            `json:"id"`
	Kind    snapshot.Kind     `json:"kind"`
	Parent  string            `json:"parent,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	Created time.Time         `json:"created"`
	Updated time.Time         `json:"updated"`
	// Usage of a committed snapshot, measured once at Commit.
	Inodes int64 `json:"inodes,omitempty"`
	Size   int64 `json:"size,omitempty"`
}

// maxSpares bounds the emptied snapshot directories kept for reuse.
const maxSpares = 64

// Snapshotter is the overlayfs implementation of snapshot.Snapshotter.
type Snapshotter struct {
	root string
	db   *bolt.DB

	spares fsutil.Spares // emptied directories of removed snapshots, ready for reuse
}

var _ snapshot.Snapshotter = (*Snapshotter)(nil)

// New opens the snapshotter rooted at root (snapshots live in root/snapshots) with metadata in db,
// and removes leftovers of interrupted operations (see Cleanup).
func New(root string, db *bolt.DB) (*Snapshotter, error) {
	s := &Snapshotter{root: root, db: db, spares: fsutil.Spares{Max: maxSpares}}
	if err := os.MkdirAll(s.snapshotsDir(), 0o700); err != nil {
		return nil, fmt.Errorf("overlay snapshotter: %w", err)
	}
	// Each snapshot's directory in an inode group of its own: overlayfs makes and deletes a
	// handful of inodes in a snapshot's work directory at every mount (see fsutil.SpreadSubdirs).
	fsutil.SpreadSubdirs(s.snapshotsDir())
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketName)
		if err != nil {
			return err
		}
		if _, err := b.CreateBucketIfNotExists(keysBucket); err != nil {
			return err
		}
		_, err = b.CreateBucketIfNotExists(childrenBucket)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("overlay snapshotter: creating buckets: %w", err)
	}
	if err := s.Cleanup(context.Background()); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Snapshotter) snapshotsDir() string { return filepath.Join(s.root, "snapshots") }

func (s *Snapshotter) dir(id uint64) string {
	return filepath.Join(s.snapshotsDir(), strconv.FormatUint(id, 10))
}

func (s *Snapshotter) fsDir(id uint64) string   { return filepath.Join(s.dir(id), "fs") }
func (s *Snapshotter) workDir(id uint64) string { return filepath.Join(s.dir(id), "work") }

func validKey(key string) error {
	if key == "" || strings.IndexByte(key, 0) >= 0 {
		return fmt.Errorf("snapshot key %q: must be non-empty and without NUL: %w", key, errdefs.ErrInvalidArgument)
	}
	return nil
}

func buckets(tx *bolt.Tx) (keys, children *bolt.Bucket, err error) {
	b := tx.Bucket(bucketName)
	if b == nil {
		return nil, nil, errors.New("snapshots bucket missing")
	}
	return b.Bucket(keysBucket), b.Bucket(childrenBucket), nil
}

func getRecord(keys *bolt.Bucket, key string) (record, error) {
	v := keys.Get([]byte(key))
	if v == nil {
		return record{}, fmt.Errorf("snapshot %q: %w", key, errdefs.ErrNotFound)
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return record{}, fmt.Errorf("snapshot %q: corrupt metadata: %w", key, err)
	}
	return r, nil
}

func putRecord(keys *bolt.Bucket, key string, r record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return keys.Put([]byte(key), v)
}

func childKey(parent, child string) []byte { return []byte(parent + "\x00" + child) }

// parentIDs returns the ids of parent and its ancestors, nearest first.
func parentIDs(keys *bolt.Bucket, parent string) ([]uint64, error) {
	var ids []uint64
	for p := parent; p != ""; {
		if len(ids) >= maxDepth {
			return nil, fmt.Errorf("snapshot %q: more than %d parents: %w", parent, maxDepth, errdefs.ErrFailedPrecondition)
		}
		r, err := getRecord(keys, p)
		if err != nil {
			return nil, err
		}
		ids = append(ids, r.ID)
		p = r.Parent
	}
	return ids, nil
}

func (r record) info(name string) snapshot.Info {
	labels := make(map[string]string, len(r.Labels))
	for k, v := range r.Labels {
		labels[k] = v
	}
	return snapshot.Info{Kind: r.Kind, Name: name, Parent: r.Parent, Labels: labels, Created: r.Created, Updated: r.Updated}
}

func copyLabels(l map[string]string) map[string]string {
	if len(l) == 0 {
		return nil
	}
	out := make(map[string]string, len(l))
	for k, v := range l {
		out[k] = v
	}
	return out
}

// Stat implements snapshot.Snapshotter.
func (s *Snapshotter) Stat(ctx context.Context, key string) (snapshot.Info, error) {
	var info snapshot.Info
	err := s.db.View(func(tx *bolt.Tx) error {
		keys, _, err := buckets(tx)
		if err != nil {
			return err
		}
		r, err := getRecord(keys, key)
		info = r.info(key)
		return err
	})
	return info, err
}

// Prepare implements snapshot.Snapshotter.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, labels map[string]string) ([]snapshot.Mount, error) {
	return s.create(ctx, snapshot.Active, key, parent, labels)
}

// View implements snapshot.Snapshotter.
func (s *Snapshotter) View(ctx context.Context, key, parent string, labels map[string]string) ([]snapshot.Mount, error) {
	return s.create(ctx, snapshot.View, key, parent, labels)
}

func (s *Snapshotter) create(ctx context.Context, kind snapshot.Kind, key, parent string, labels map[string]string) ([]snapshot.Mount, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var p *Prepared
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		p, err = s.createTx(tx, kind, key, parent, labels)
		return err
	})
	if err != nil {
		p.Abort()
		return nil, fmt.Errorf("preparing snapshot %q: %w", key, err)
	}
	return p.Mounts, nil
}

// Prepared is a snapshot made inside a caller's transaction (PrepareTx). If that transaction
// does not commit, the caller calls Abort. Methods of a nil Prepared do nothing.
type Prepared struct {
	// Mounts are the snapshot's mounts, as Prepare returns them.
	Mounts []snapshot.Mount
	dir    string
}

// Abort deletes the directory of a snapshot whose transaction rolled back. (After a crash,
// Cleanup deletes it.)
func (p *Prepared) Abort() {
	if p == nil {
		return
	}
	if err := os.RemoveAll(p.dir); err != nil {
		slog.Warn("overlay snapshotter: removing directory of failed snapshot", "dir", p.dir, "err", err)
	}
}

// PrepareTx is Prepare inside the caller's write transaction tx, so that the snapshot is
// recorded atomically with the caller's own records (one commit instead of two). Its
// directory is made and renamed into place at once; see Prepared for what the caller must do
// if tx does not commit. On error nothing is left on disk.
func (s *Snapshotter) PrepareTx(tx *bolt.Tx, key, parent string, labels map[string]string) (*Prepared, error) {
	p, err := s.createTx(tx, snapshot.Active, key, parent, labels)
	if err != nil {
		return nil, fmt.Errorf("preparing snapshot %q: %w", key, err)
	}
	return p, nil
}

func (s *Snapshotter) createTx(tx *bolt.Tx, kind snapshot.Kind, key, parent string, labels map[string]string) (_ *Prepared, retErr error) {
	if err := validKey(key); err != nil {
		return nil, err
	}
	var (
		tmpDir  string // removed on failure
		doneDir string // renamed into place; removed on failure
	)
	defer func() {
		if retErr == nil {
			return
		}
		for _, d := range []string{tmpDir, doneDir} {
			if d == "" {
				continue
			}
			if err := os.RemoveAll(d); err != nil {
				slog.Warn("overlay snapshotter: removing directory of failed snapshot", "dir", d, "err", err)
			}
		}
	}()
	keys, children, err := buckets(tx)
	if err != nil {
		return nil, err
	}
	if keys.Get([]byte(key)) != nil {
		return nil, fmt.Errorf("snapshot %q: %w", key, errdefs.ErrAlreadyExists)
	}
	var pids []uint64
	if parent != "" {
		pr, err := getRecord(keys, parent)
		if err != nil {
			return nil, fmt.Errorf("parent: %w", err)
		}
		if pr.Kind != snapshot.Committed {
			return nil, fmt.Errorf("parent %q is %s, not committed: %w", parent, pr.Kind, errdefs.ErrInvalidArgument)
		}
		if pids, err = parentIDs(keys, parent); err != nil {
			return nil, err
		}
		if err := children.Put(childKey(parent, key), nil); err != nil {
			return nil, err
		}
	}
	id, err := tx.Bucket(bucketName).NextSequence()
	if err != nil {
		return nil, err
	}
	if tmpDir, err = s.makeDirs(pids); err != nil {
		return nil, err
	}
	if err := os.Rename(tmpDir, s.dir(id)); err != nil {
		return nil, fmt.Errorf("creating snapshot directory: %w", err)
	}
	tmpDir, doneDir = "", s.dir(id)
	now := time.Now().UTC()
	r := record{ID: id, Kind: kind, Parent: parent, Labels: copyLabels(labels), Created: now, Updated: now}
	if err := putRecord(keys, key, r); err != nil {
		return nil, err
	}
	return &Prepared{Mounts: s.mounts(r, pids), dir: doneDir}, nil
}

// makeDirs creates the fs and work dirs of a new snapshot under a temporary name. The fs dir takes
// its owner and mode from the nearest parent's: the overlay's root directory shows the upper dir's.
func (s *Snapshotter) makeDirs(pids []uint64) (string, error) {
	if tmp := s.spares.Take(); tmp != "" {
		fsd := filepath.Join(tmp, "fs")
		uid, gid, mode := 0, 0, uint32(0o755)
		if len(pids) > 0 {
			var st unix.Stat_t
			if err := unix.Stat(s.fsDir(pids[0]), &st); err != nil {
				return tmp, fmt.Errorf("parent directory: %w", err)
			}
			uid, gid, mode = int(st.Uid), int(st.Gid), st.Mode&0o7777
		}
		if err := os.Lchown(fsd, uid, gid); err != nil {
			return tmp, fmt.Errorf("reusing snapshot directory: %w", err)
		}
		if err := unix.Chmod(fsd, mode); err != nil {
			return tmp, fmt.Errorf("reusing snapshot directory: %w", err)
		}
		return tmp, nil
	}
	tmp, err := os.MkdirTemp(s.snapshotsDir(), "new-")
	if err != nil {
		return "", fmt.Errorf("creating snapshot directory: %w", err)
	}
	fsd := filepath.Join(tmp, "fs")
	if err := os.Mkdir(fsd, 0o755); err != nil {
		return tmp, fmt.Errorf("creating snapshot directory: %w", err)
	}
	if err := os.Mkdir(filepath.Join(tmp, "work"), 0o700); err != nil {
		return tmp, fmt.Errorf("creating snapshot directory: %w", err)
	}
	if len(pids) > 0 {
		var st unix.Stat_t
		if err := unix.Stat(s.fsDir(pids[0]), &st); err != nil {
			return tmp, fmt.Errorf("parent directory: %w", err)
		}
		if err := os.Lchown(fsd, int(st.Uid), int(st.Gid)); err != nil {
			return tmp, fmt.Errorf("copying parent owner: %w", err)
		}
		if err := unix.Chmod(fsd, st.Mode&0o7777); err != nil {
			return tmp, fmt.Errorf("copying parent mode: %w", err)
		}
	}
	return tmp, nil
}

// mounts computes the mounts of an active or view snapshot with parents pids (nearest first).
func (s *Snapshotter) mounts(r record, pids []uint64) []snapshot.Mount {
	ro := r.Kind == snapshot.View
	if len(pids) == 0 {
		opt := "rw"
		if ro {
			opt = "ro"
		}
		return []snapshot.Mount{{Type: "bind", Source: s.fsDir(r.ID), Options: []string{"rbind", opt}}}
	}
	if ro && len(pids) == 1 {
		// overlayfs needs an upper dir or two lower dirs; a read-only bind is the same view.
		return []snapshot.Mount{{Type: "bind", Source: s.fsDir(pids[0]), Options: []string{"rbind", "ro"}}}
	}
	lower := make([]string, len(pids))
	for i, id := range pids {
		lower[i] = s.fsDir(id)
	}
	var opts []string
	if ro {
		opts = append(opts, "ro")
	} else {
		// redirect_dir/metacopy off: the upper dir must hold whole files and real directories so
		// that archive.WriteDiff can turn it into a layer (some kernels default them on).
		opts = append(opts, "workdir="+s.workDir(r.ID), "upperdir="+s.fsDir(r.ID), "redirect_dir=off", "metacopy=off")
	}
	// index=off: several overlays share lower dirs; the inode index would tie them together.
	opts = append(opts, "index=off", "lowerdir="+strings.Join(lower, ":"))
	return []snapshot.Mount{{Type: "overlay", Source: "overlay", Options: opts}}
}

// Mounts implements snapshot.Snapshotter.
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]snapshot.Mount, error) {
	var mounts []snapshot.Mount
	err := s.db.View(func(tx *bolt.Tx) error {
		keys, _, err := buckets(tx)
		if err != nil {
			return err
		}
		r, err := getRecord(keys, key)
		if err != nil {
			return err
		}
		if r.Kind == snapshot.Committed {
			return fmt.Errorf("snapshot %q is committed, make a view to mount it: %w", key, errdefs.ErrFailedPrecondition)
		}
		pids, err := parentIDs(keys, r.Parent)
		if err != nil {
			return err
		}
		mounts = s.mounts(r, pids)
		return nil
	})
	return mounts, err
}

// UpperDir returns the fs directory of the active snapshot key: the overlay upper dir, into which
// a layer can be applied (archive.Apply with Overlay: true) without mounting anything.
func (s *Snapshotter) UpperDir(ctx context.Context, key string) (string, error) {
	var dir string
	err := s.db.View(func(tx *bolt.Tx) error {
		keys, _, err := buckets(tx)
		if err != nil {
			return err
		}
		r, err := getRecord(keys, key)
		if err != nil {
			return err
		}
		if r.Kind != snapshot.Active {
			return fmt.Errorf("snapshot %q is %s, not active: %w", key, r.Kind, errdefs.ErrFailedPrecondition)
		}
		dir = s.fsDir(r.ID)
		return nil
	})
	return dir, err
}

// Commit implements snapshot.Snapshotter. It measures the layer's usage once, as it can no
// longer change.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, labels map[string]string) error {
	if err := validKey(name); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		keys, children, err := buckets(tx)
		if err != nil {
			return err
		}
		r, err := getRecord(keys, key)
		if err != nil {
			return err
		}
		if r.Kind != snapshot.Active {
			return fmt.Errorf("snapshot %q is %s, only active snapshots can be committed: %w", key, r.Kind, errdefs.ErrFailedPrecondition)
		}
		if keys.Get([]byte(name)) != nil {
			return fmt.Errorf("snapshot %q: %w", name, errdefs.ErrAlreadyExists)
		}
		u, err := diskUsage(ctx, s.fsDir(r.ID))
		if err != nil {
			return err
		}
		r.Kind, r.Labels, r.Updated = snapshot.Committed, copyLabels(labels), time.Now().UTC()
		r.Inodes, r.Size = u.Inodes, u.Size
		if err := keys.Delete([]byte(key)); err != nil {
			return err
		}
		if err := putRecord(keys, name, r); err != nil {
			return err
		}
		if r.Parent != "" {
			if err := children.Delete(childKey(r.Parent, key)); err != nil {
				return err
			}
			return children.Put(childKey(r.Parent, name), nil)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("committing %q as %q: %w", key, name, err)
	}
	return nil
}

// Remove implements snapshot.Snapshotter. The directory is deleted, never recycled: the
// caller may not know that nothing uses the snapshot any more (see Removal.Recycle).
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	return s.remove(key, (*Removal).Purge)
}

// remove removes key in a transaction of its own and then disposes of its directory with done.
func (s *Snapshotter) remove(key string, done func(*Removal)) error {
	var rm *Removal
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		rm, err = s.RemoveTx(tx, key)
		return err
	})
	if err != nil {
		rm.Rollback()
		return fmt.Errorf("removing snapshot %q: %w", key, err)
	}
	done(rm)
	return nil
}

// Removal is a snapshot removed inside a caller's transaction (RemoveTx): its directory has
// been renamed to rm-<id>. Once the transaction has ended, the caller calls Purge if it
// committed, Rollback if not. Methods of a nil Removal do nothing.
type Removal struct {
	s         *Snapshotter
	dir, orig string
}

// Recycle empties the removed snapshot's directory for reuse by a later Prepare, or deletes it
// (Purge) when it cannot be made as good as new or the pool is full. Like Purge it may run at
// any time after the transaction committed. The caller must know that nothing uses the
// snapshot any more: not only unmounted, but no process left that could hold a lazily
// detached mount of it (overlayfs would let the next mount share the directories).
func (r *Removal) Recycle() {
	if r == nil {
		return
	}
	if r.s.spares.Keep(r.dir, r.s.snapshotsDir(), emptySnapshotDir) {
		return
	}
	r.Purge()
}

// Purge deletes the removed snapshot's files. They are garbage once the transaction that
// forgot the snapshot committed, so Purge may run at any later time; after a crash, Cleanup
// deletes them.
func (r *Removal) Purge() {
	if r == nil {
		return
	}
	if err := os.RemoveAll(r.dir); err != nil {
		slog.Warn("overlay snapshotter: snapshot forgotten but its directory remains; Cleanup will retry", "dir", r.dir, "err", err)
	}
}

// Rollback puts the directory back under the snapshot's id, after the transaction that was to
// forget it rolled back.
func (r *Removal) Rollback() {
	if r == nil {
		return
	}
	if err := os.Rename(r.dir, r.orig); err != nil && !errors.Is(err, fs.ErrNotExist) {
		slog.Warn("overlay snapshotter: restoring directory after failed remove", "dir", r.dir, "err", err)
	}
}

// RemoveTx removes the snapshot key inside the caller's write transaction tx, so that it is
// forgotten atomically with the caller's own records. See Removal for what the caller must do
// once tx has ended; on error nothing was changed on disk (tx must still be rolled back if
// the error is not ignored).
func (s *Snapshotter) RemoveTx(tx *bolt.Tx, key string) (*Removal, error) {
	keys, children, err := buckets(tx)
	if err != nil {
		return nil, err
	}
	r, err := getRecord(keys, key)
	if err != nil {
		return nil, err
	}
	prefix := []byte(key + "\x00")
	if k, _ := children.Cursor().Seek(prefix); k != nil && strings.HasPrefix(string(k), string(prefix)) {
		return nil, fmt.Errorf("snapshot %q has children (e.g. %q): %w", key, strings.TrimPrefix(string(k), string(prefix)), errdefs.ErrFailedPrecondition)
	}
	if err := keys.Delete([]byte(key)); err != nil {
		return nil, err
	}
	if r.Parent != "" {
		if err := children.Delete(childKey(r.Parent, key)); err != nil {
			return nil, err
		}
	}
	// Renamed inside the transaction, deleted after it: a crash in between leaves an rm-<id>
	// directory that Cleanup deletes.
	rm := filepath.Join(s.snapshotsDir(), "rm-"+strconv.FormatUint(r.ID, 10))
	if err := os.Rename(s.dir(r.ID), rm); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("removing snapshot directory: %w", err)
	}
	return &Removal{s: s, dir: rm, orig: s.dir(r.ID)}, nil
}

// Walk implements snapshot.Snapshotter. It reads all records first, so fn runs outside any
// transaction and may call the Snapshotter.
func (s *Snapshotter) Walk(ctx context.Context, fn func(context.Context, snapshot.Info) error) error {
	var infos []snapshot.Info
	err := s.db.View(func(tx *bolt.Tx) error {
		keys, _, err := buckets(tx)
		if err != nil {
			return err
		}
		return keys.ForEach(func(k, v []byte) error {
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("snapshot %q: corrupt metadata: %w", k, err)
			}
			infos = append(infos, r.info(string(k)))
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

// Usage implements snapshot.Snapshotter.
func (s *Snapshotter) Usage(ctx context.Context, key string) (snapshot.Usage, error) {
	var r record
	err := s.db.View(func(tx *bolt.Tx) error {
		keys, _, err := buckets(tx)
		if err != nil {
			return err
		}
		r, err = getRecord(keys, key)
		return err
	})
	if err != nil {
		return snapshot.Usage{}, err
	}
	if r.Kind == snapshot.Committed {
		return snapshot.Usage{Inodes: r.Inodes, Size: r.Size}, nil
	}
	return diskUsage(ctx, s.fsDir(r.ID))
}

// diskUsage counts the inodes and allocated bytes below dir, each hardlinked inode once.
func diskUsage(ctx context.Context, dir string) (snapshot.Usage, error) {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]struct{}{}
	var u snapshot.Usage
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		k := inode{dev: st.Dev, ino: st.Ino}
		if _, ok := seen[k]; ok {
			return nil
		}
		seen[k] = struct{}{}
		u.Inodes++
		u.Size += st.Blocks * 512
		return nil
	})
	if err != nil {
		return snapshot.Usage{}, fmt.Errorf("measuring disk usage of %s: %w", dir, err)
	}
	return u, nil
}

// Cleanup removes directories under root/snapshots that have no metadata record: leftovers of a
// Prepare, View or Remove interrupted by a crash. It runs in a write transaction so that it never
// races with those operations.
func (s *Snapshotter) Cleanup(ctx context.Context) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		keys, _, err := buckets(tx)
		if err != nil {
			return err
		}
		known := map[string]bool{}
		err = keys.ForEach(func(_, v []byte) error {
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			known[strconv.FormatUint(r.ID, 10)] = true
			return nil
		})
		if err != nil {
			return fmt.Errorf("overlay snapshotter cleanup: %w", err)
		}
		for _, n := range s.spares.Names() {
			known[n] = true
		}
		entries, err := os.ReadDir(s.snapshotsDir())
		if err != nil {
			return fmt.Errorf("overlay snapshotter cleanup: %w", err)
		}
		var errs []error
		for _, e := range entries {
			if known[e.Name()] {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			p := filepath.Join(s.snapshotsDir(), e.Name())
			slog.Info("overlay snapshotter: removing orphaned snapshot directory", "dir", p)
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("overlay snapshotter cleanup: %w", err)
		}
		return nil
	})
}

// emptySnapshotDir leaves dir as makeDirs makes it, apart from fs's owner and mode (set on
// reuse): an empty fs without extended attributes or inode flags (a container may set them on
// its root directory; overlayfs keeps its own xattrs there too), and a work directory holding
// at most overlayfs's own "work", emptied (it holds the "incompat/volatile" mark of a volatile
// mount, which any later mount refuses). The deletions are made durable: after a host crash a
// reused directory must not show the removed snapshot's files. Other files in dir (the
// daemon's volatile-boot-id) stay: their users rewrite them.
func emptySnapshotDir(dir string) error {
	fsd, work := filepath.Join(dir, "fs"), filepath.Join(dir, "work")
	ww := filepath.Join(work, "work")
	if err := emptyDir(fsd, nil); err != nil {
		return err
	}
	f, err := os.Open(fsd)
	if err != nil {
		return err
	}
	err = fsutil.Reset(f, 0, 0, 0o755)
	f.Close()
	if err != nil {
		return err
	}
	if err := emptyDir(work, map[string]bool{"work": true}); err != nil {
		return err
	}
	if err := emptyDir(ww, nil); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, d := range []string{fsd, ww, work} {
		if err := fsutil.SyncDir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// emptyDir removes everything in dir but the names in keep; dir itself must be a directory.
func emptyDir(dir string, keep map[string]bool) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if keep[n] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	return nil
}
