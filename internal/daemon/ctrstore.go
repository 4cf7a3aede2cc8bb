package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/berth-dev/berth/internal/snapshot"
	"github.com/berth-dev/berth/internal/snapshot/overlay"
	"github.com/berth-dev/berth/internal/volume"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	bolt "go.etcd.io/bbolt"
)

// containersBucket holds one JSON record per container, keyed by ID.
var containersBucket = []byte("containers")

// ctrState is a container's persisted state. Docker's State shape is derived from it.
type ctrState struct {
	Status     container.ContainerState `json:"status"`
	Pid        int                      `json:"pid,omitempty"`
	ExitCode   int                      `json:"exitCode"`
	Error      string                   `json:"error,omitempty"`
	OOMKilled  bool                     `json:"oomKilled,omitempty"`
	StartedAt  time.Time                `json:"startedAt,omitzero"`
	FinishedAt time.Time                `json:"finishedAt,omitzero"`
	// StoppedByUser is set by stop/kill through the API, so that restart policies (except
	// always) leave the container alone, and unless-stopped stays down across daemon restarts.
	StoppedByUser bool `json:"stoppedByUser,omitempty"`
}

// ctrRecord is everything berth keeps about one container.
type ctrRecord struct {
	ID           string                `json:"id"`
	Name         string                `json:"name"` // with the leading "/", as Docker
	Created      time.Time             `json:"created"`
	Image        string                `json:"image"` // image ID
	ImageRef     string                `json:"imageRef"`
	ChainID      string                `json:"chainId"` // snapshot parent
	Config       *container.Config     `json:"config"`
	HostConfig   *container.HostConfig `json:"hostConfig"`
	State        ctrState              `json:"state"`
	RestartCount int                   `json:"restartCount"`
	// Generation counts starts; the monitor of an older run ignores its late exit.
	Generation int `json:"generation"`
	// Mounts are the container's volumes, binds and tmpfs mounts, resolved at create and never
	// changed afterwards (volumeUsers reads them without the container's lock).
	Mounts []mountPoint `json:"mounts,omitempty"`
}

// ctr is the in-memory handle of a container. mu serialises lifecycle operations on it
// (start, stop, remove) and guards rec; readers copy rec under mu.
type ctr struct {
	mu  sync.Mutex
	rec ctrRecord
	// exited is closed and replaced at each exit, waking waiters for "next-exit".
	exited chan struct{}
	// removed is closed when the container is deleted.
	removed chan struct{}
	// attachWaiters are attach requests that arrived before the shim existed; start hands them
	// the shim before releasing the process so that no output is lost.
	attachWaiters []*attachWaiter
	// mounts are the mounts of the container's writable snapshot, which never change: kept
	// from create (or the first start after a daemon restart) so that a start does not read
	// them from the store again. nil until known.
	mounts []snapshot.Mount
	// premount is the root filesystem being mounted ahead of a start (premount.go); nil
	// when none is. Whoever takes it (start, removal, an archive operation, the expiry) waits
	// for it to be done and sets the field to nil.
	premount *premount
	// shim is the live shim of a running container, nil otherwise.
	shim *shimHandle
	// stopRestart cancels a pending restart back-off.
	stopRestart chan struct{}
	// restarting is set while `restart` stops the container: that exit does not remove a --rm
	// container, as in Docker.
	restarting bool
}

// isRemoved reports whether c was deleted.
func (c *ctr) isRemoved() bool {
	select {
	case <-c.removed:
		return true
	default:
		return false
	}
}

// validName is Docker's rule for container names, ^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$, which is also
// its rule for volume names after the optional slash.
func validName(name string) bool { return volume.ValidName(strings.TrimPrefix(name, "/")) }

func newID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ctrIndex is the daemon's table of containers.
type ctrIndex struct {
	mu    sync.RWMutex // guards byID and names
	byID  map[string]*ctr
	names map[string]string // "/name" -> id
}

func newCtrIndex() *ctrIndex {
	return &ctrIndex{byID: map[string]*ctr{}, names: map[string]string{}}
}

// get resolves a full ID, a unique ID prefix, or a name (with or without "/").
func (x *ctrIndex) get(ref string) (*ctr, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if ref == "" {
		return nil, errdefs.ErrInvalidArgument.WithMessage("container name or ID is empty")
	}
	if c, ok := x.byID[ref]; ok {
		return c, nil
	}
	name := ref
	if !strings.HasPrefix(name, "/") {
		name = "/" + name
	}
	if id, ok := x.names[name]; ok {
		return x.byID[id], nil
	}
	var found *ctr
	for id, c := range x.byID {
		if strings.HasPrefix(id, ref) {
			if found != nil {
				return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("multiple IDs found with provided prefix: %s", ref))
			}
			found = c
		}
	}
	if found == nil {
		return nil, errdefs.ErrNotFound.WithMessage("No such container: " + ref)
	}
	return found, nil
}

func (x *ctrIndex) all() []*ctr {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]*ctr, 0, len(x.byID))
	for _, c := range x.byID {
		out = append(out, c)
	}
	return out
}

// reserveName claims name for id, or reports Docker's conflict message.
func (x *ctrIndex) reserveName(name, id string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if other, ok := x.names[name]; ok && other != id {
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("Conflict. The container name %q is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name.", name, other))
	}
	x.names[name] = id
	return nil
}

func (x *ctrIndex) releaseName(name, id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.names[name] == id {
		delete(x.names, name)
	}
}

func (x *ctrIndex) add(c *ctr) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.byID[c.rec.ID] = c
	x.names[c.rec.Name] = c.rec.ID
}

func (x *ctrIndex) remove(c *ctr) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.byID, c.rec.ID)
	if x.names[c.rec.Name] == c.rec.ID {
		delete(x.names, c.rec.Name)
	}
}

// saveCtr persists a record in one transaction.
func (d *Daemon) saveCtr(rec *ctrRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode container %s: %w", rec.ID, err)
	}
	return d.db.Update(func(tx *bolt.Tx) error { return putCtr(tx, rec.ID, b) })
}

func putCtr(tx *bolt.Tx, id string, b []byte) error {
	bk, err := tx.CreateBucketIfNotExists(containersBucket)
	if err != nil {
		return err
	}
	return bk.Put([]byte(id), b)
}

// storeNewCtr makes a new container's writable snapshot and stores its record in one
// transaction: one commit (two fdatasyncs of the store) on the path of every create where
// there were two, and a crash leaves both or neither (before, a snapshot record without its
// container could stay behind for good).
func (d *Daemon) storeNewCtr(rec *ctrRecord) (*overlay.Prepared, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode container %s: %w", rec.ID, err)
	}
	var p *overlay.Prepared
	err = d.db.Update(func(tx *bolt.Tx) error {
		var err error
		if p, err = d.snap.PrepareTx(tx, snapKey(rec.ID), rec.ChainID, map[string]string{"berth.container": rec.ID}); err != nil {
			return fmt.Errorf("prepare root filesystem: %w", err)
		}
		if err := putCtr(tx, rec.ID, b); err != nil {
			return fmt.Errorf("save container: %w", err)
		}
		return nil
	})
	if err != nil {
		p.Abort()
		return nil, err
	}
	return p, nil
}

func (d *Daemon) loadCtrs() ([]ctrRecord, error) {
	var out []ctrRecord
	err := d.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(containersBucket)
		if bk == nil {
			return nil
		}
		return bk.ForEach(func(k, v []byte) error {
			var r ctrRecord
			if err := json.Unmarshal(v, &r); err != nil {
				d.log.Warn("skipping unreadable container record", "id", string(k), "err", err)
				return nil
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}
