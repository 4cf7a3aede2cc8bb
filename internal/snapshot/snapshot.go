// Package snapshot defines berth's Snapshotter: the interface through which the daemon allocates,
// layers and mounts container and image filesystems, following containerd's snapshotter model.
// It also performs the mounts a snapshotter returns (MountAll/UnmountAll).
//
// The package holds no state and must not know about images, containers or archives: it deals in
// keys, parents and mounts only. Implementations live in subpackages (overlay).
package snapshot

import (
	"context"
	"fmt"
	"time"
)

// Kind is the state of a snapshot.
type Kind int

// Snapshot kinds.
const (
	// View is a read-only snapshot over a committed parent (or empty). It cannot be committed.
	View Kind = iota + 1
	// Active is a writable snapshot that can be mounted, changed and then committed.
	Active
	// Committed is an immutable snapshot that can only be a parent, be stat'ed or removed.
	Committed
)

// String returns "view", "active" or "committed".
func (k Kind) String() string {
	switch k {
	case View:
		return "view"
	case Active:
		return "active"
	case Committed:
		return "committed"
	default:
		return fmt.Sprintf("Kind(%d)", int(k))
	}
}

// Info describes a snapshot.
type Info struct {
	Kind Kind
	// Name is the key of an active or view snapshot, or the name of a committed one.
	Name string
	// Parent is the name of the committed parent; "" for none.
	Parent  string
	Labels  map[string]string
	Created time.Time
	Updated time.Time
}

// Usage is the resources a snapshot's own layer (not its parents) uses on disk.
type Usage struct {
	Inodes int64
	// Size in bytes of allocated blocks.
	Size int64
}

// Mount is one mount to perform, as in containerd's mount.Mount: Type is "overlay" or "bind",
// Options are mount(8)-style options ("ro", "rbind", "lowerdir=a:b", "upperdir=...").
type Mount struct {
	Type    string
	Source  string
	Options []string
}

// Snapshotter allocates, layers and mounts filesystems, in containerd's vocabulary.
//
// # Vocabulary
//
//   - key: the name of an active or view snapshot, chosen by the caller when it calls Prepare or
//     View. It is valid until the snapshot is committed or removed.
//   - name: the name of a committed snapshot, chosen by the caller at Commit.
//   - parent: the name of a committed snapshot that another one is based on; "" means empty.
//
// Keys and names share one namespace: a key in use cannot be a committed name and vice versa. They
// are opaque strings (any bytes but empty); callers usually use chain IDs for committed image
// layers and container IDs for container rootfs keys.
//
// # Lifecycle
//
// Unpacking an image layer by layer:
//
//	mounts, _ := s.Prepare(ctx, "extract-1", "", nil)    // empty, writable
//	// mount them (MountAll) or, for overlay, write straight into the upper dir; apply layer 1
//	s.Commit(ctx, chainID1, "extract-1", nil)              // "extract-1" is gone; chainID1 exists
//	s.Prepare(ctx, "extract-2", chainID1, nil)             // layer 2 on top of layer 1
//	// apply layer 2 ...
//	s.Commit(ctx, chainID2, "extract-2", nil)
//
// Running a container over the image: Prepare(ctx, containerID, chainIDn, nil), MountAll the
// result on the rootfs, run, UnmountAll, then Remove(ctx, containerID) — or Commit it to make a
// new image layer. A read-only look at an image is View(ctx, key, chainIDn, nil), removed after
// use.
//
// # Misuse
//
//   - Prepare/View with a key or name that exists fails with errdefs.ErrAlreadyExists; with a
//     parent that does not exist, errdefs.ErrNotFound; with a parent that is not committed,
//     errdefs.ErrInvalidArgument.
//   - Commit of a view or of a committed snapshot fails with errdefs.ErrFailedPrecondition; only
//     active snapshots can be committed. The key must not be mounted while it is committed.
//   - Mounts of a committed snapshot fails with errdefs.ErrFailedPrecondition: commit freezes it,
//     to read it make a View.
//   - Remove of a snapshot that still has children fails with errdefs.ErrFailedPrecondition:
//     remove the children first. Removing a mounted snapshot is the caller's bug; unmount first.
//   - Unknown keys fail with errdefs.ErrNotFound everywhere.
type Snapshotter interface {
	// Stat returns the info of the snapshot key or name.
	Stat(ctx context.Context, key string) (Info, error)
	// Usage returns the disk usage of the snapshot's own layer. For active snapshots it walks the
	// layer now (costly for big layers); for committed ones it was recorded at Commit.
	Usage(ctx context.Context, key string) (Usage, error)
	// Mounts returns the mounts of an active or view snapshot again (same as Prepare/View did).
	Mounts(ctx context.Context, key string) ([]Mount, error)
	// Prepare creates an active snapshot key on top of parent and returns its mounts.
	Prepare(ctx context.Context, key, parent string, labels map[string]string) ([]Mount, error)
	// View creates a read-only snapshot key of parent and returns its mounts.
	View(ctx context.Context, key, parent string, labels map[string]string) ([]Mount, error)
	// Commit turns the active snapshot key into the committed snapshot name. key is gone after.
	// labels replace the snapshot's labels.
	Commit(ctx context.Context, name, key string, labels map[string]string) error
	// Remove deletes the snapshot key or name and its data. It must have no children.
	Remove(ctx context.Context, key string) error
	// Walk calls fn for every snapshot, in key order. fn may call the Snapshotter.
	Walk(ctx context.Context, fn func(context.Context, Info) error) error
}
