package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/api"
	bevents "github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/snapshot"
	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/jsonstream"
	"go.etcd.io/bbolt"
)

// The service must implement the API's image backend exactly, and the daemon's event bus must
// be a Publisher.
var (
	_ api.ImageBackend = (*image.Service)(nil)
	_ image.Publisher  = (*bevents.Bus)(nil)
)

// fakeSnapshotter is an in-memory snapshotter with containerd's rules: parents must be
// committed, names are unique, a snapshot with children cannot be removed. Each snapshot's
// upper dir is a real directory so that layers are really extracted.
type fakeSnapshotter struct {
	root  string
	mu    sync.Mutex
	snaps map[string]*fakeSnap
	n     int
	// prepares counts Prepare calls per parent, to observe how often layers are unpacked.
	prepares int
}

type fakeSnap struct {
	info      snapshot.Info
	committed bool
	dir       string
}

func newFakeSnapshotter(t testing.TB) *fakeSnapshotter {
	return &fakeSnapshotter{root: t.TempDir(), snaps: map[string]*fakeSnap{}}
}

func (f *fakeSnapshotter) Stat(ctx context.Context, key string) (snapshot.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.snaps[key]
	if !ok {
		return snapshot.Info{}, fmt.Errorf("snapshot %s: %w", key, errdefs.ErrNotFound)
	}
	return s.info, nil
}

func (f *fakeSnapshotter) Prepare(ctx context.Context, key, parent string, labels map[string]string) ([]snapshot.Mount, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.snaps[key]; ok {
		return nil, fmt.Errorf("snapshot %s: %w", key, errdefs.ErrAlreadyExists)
	}
	if parent != "" {
		p, ok := f.snaps[parent]
		if !ok || !p.committed {
			return nil, fmt.Errorf("parent %s: %w", parent, errdefs.ErrNotFound)
		}
	}
	f.n++
	f.prepares++
	dir := filepath.Join(f.root, fmt.Sprint(f.n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f.snaps[key] = &fakeSnap{info: snapshot.Info{Name: key, Parent: parent, Labels: labels, Created: time.Now()}, dir: dir}
	return []snapshot.Mount{{Type: "bind", Source: dir}}, nil
}

func (f *fakeSnapshotter) Commit(ctx context.Context, name, key string, labels map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.snaps[key]
	if !ok || s.committed {
		return fmt.Errorf("active snapshot %s: %w", key, errdefs.ErrNotFound)
	}
	if _, ok := f.snaps[name]; ok {
		return fmt.Errorf("snapshot %s: %w", name, errdefs.ErrAlreadyExists)
	}
	delete(f.snaps, key)
	s.committed = true
	s.info.Name = name
	s.info.Labels = labels
	f.snaps[name] = s
	return nil
}

func (f *fakeSnapshotter) Remove(ctx context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.snaps[key]
	if !ok {
		return fmt.Errorf("snapshot %s: %w", key, errdefs.ErrNotFound)
	}
	for _, c := range f.snaps {
		if c.info.Parent == key {
			return fmt.Errorf("snapshot %s has children: %w", key, errdefs.ErrFailedPrecondition)
		}
	}
	delete(f.snaps, key)
	return os.RemoveAll(s.dir)
}

func (f *fakeSnapshotter) Walk(ctx context.Context, fn func(context.Context, snapshot.Info) error) error {
	f.mu.Lock()
	infos := make([]snapshot.Info, 0, len(f.snaps))
	for _, s := range f.snaps {
		infos = append(infos, s.info)
	}
	f.mu.Unlock()
	for _, i := range infos {
		if err := fn(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeSnapshotter) UpperDir(ctx context.Context, key string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.snaps[key]
	if !ok {
		return "", fmt.Errorf("snapshot %s: %w", key, errdefs.ErrNotFound)
	}
	return s.dir, nil
}

func (f *fakeSnapshotter) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.snaps {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (f *fakeSnapshotter) dir(key string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.snaps[key]; ok {
		return s.dir
	}
	return ""
}

// recorder collects published events.
type recorder struct {
	mu  sync.Mutex
	evs []string
}

func (r *recorder) Publish(typ events.Type, action events.Action, id string, attrs map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, fmt.Sprintf("%s %s %s", typ, action, attrs["name"]))
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.evs...)
}

type env struct {
	root string
	db   *bbolt.DB
	snap *fakeSnapshotter
	ev   *recorder
	svc  *image.Service
}

func newEnv(t *testing.T) *env { return newBenchEnv(t) }

func newBenchEnv(t testing.TB) *env {
	t.Helper()
	root := t.TempDir()
	db, err := bbolt.Open(filepath.Join(root, "meta.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{root: root, db: db, snap: newFakeSnapshotter(t), ev: &recorder{}}
	e.reopen(t)
	return e
}

// reopen creates a new Service over the same root, DB and snapshotter (a daemon restart).
func (e *env) reopen(t testing.TB) {
	t.Helper()
	svc, err := image.New(context.Background(), image.Options{Root: e.root, DB: e.db, Snapshotter: e.snap, Events: e.ev})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
}

// blobs lists the content store.
func (e *env) blobs(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.root, "content", "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, x := range ents {
		out = append(out, x.Name())
	}
	return out
}

func (e *env) ingestEmpty(t *testing.T) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.root, "content", "ingest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Fatalf("ingest not empty: %v", ents)
	}
}

// tarDir packs a directory (an OCI layout written by go-containerregistry) into a tar.
func tarDir(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// untar extracts regular files of a tar into dir.
func untar(t *testing.T, data []byte, dir string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

type jsonMessage = jsonstream.Message

// validateImage reads every layer of img and checks its digest and diffID.
func validateImage(img v1.Image) error {
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	for i, l := range ls {
		want, err := l.DiffID()
		if err != nil {
			return err
		}
		rc, err := l.Uncompressed()
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return err
		}
		if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != want.String() {
			return fmt.Errorf("layer %d: content %s, diffID %s", i, got, want)
		}
	}
	return nil
}

// tarFiles builds a tar of regular files.
func tarFiles(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(files[n]))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha256hex(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

// chainOf computes the chainID of a diffID stack (OCI image-spec).
func chainOf(diffIDs []string) string {
	c := ""
	for i, d := range diffIDs {
		if i == 0 {
			c = d
			continue
		}
		c = "sha256:" + sha256hex([]byte(c+" "+d))
	}
	return c
}
