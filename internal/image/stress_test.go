package image_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestConcurrentLoadDeleteGC races loads, deletes, prunes and GCs of images that share layers,
// then checks that every remaining image still has all its blobs and layer snapshots.
func TestConcurrentLoadDeleteGC(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	base, err := random.Layer(4096, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	var archives [][]byte
	for i := range 4 {
		top, err := random.Layer(512, types.DockerLayer)
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(empty.Image, base, top)
		if err != nil {
			t.Fatal(err)
		}
		archives = append(archives, dockerArchive(t, map[string]v1.Image{fmt.Sprintf("s:%d", i): img}))
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				a := archives[(w+i)%len(archives)]
				if _, err := e.svc.ImageLoad(ctx, bytes.NewReader(a), nil); err != nil {
					t.Error(err)
					return
				}
				switch i % 3 {
				case 0:
					e.svc.ImageDelete(ctx, fmt.Sprintf("s:%d", (w+i)%len(archives)), true, false)
				case 1:
					if err := e.svc.GC(ctx); err != nil {
						t.Error(err)
					}
				case 2:
					e.svc.ImagePrune(ctx, true, nil)
				}
			}
		}()
	}
	wg.Wait()
	if err := e.svc.GC(ctx); err != nil {
		t.Fatal(err)
	}
	list, err := e.svc.ImageList(ctx, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	snaps := e.snap.names()
	for _, s := range list {
		ins, err := e.svc.ImageInspect(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ins.RootFS.Layers {
			c := chainOf(ins.RootFS.Layers[:i+1])
			if !slices.Contains(snaps, c) {
				t.Fatalf("image %s lost layer snapshot %s", s.ID, c)
			}
		}
		var buf bytes.Buffer
		if err := e.svc.ImageSave(ctx, []string{s.ID}, &buf); err != nil {
			t.Fatalf("image %s lost a blob: %v", s.ID, err)
		}
	}
	// And nothing unreferenced survives.
	for _, s := range snaps {
		if strings.HasPrefix(s, "berth-image-unpack-") {
			t.Fatalf("temporary snapshot left: %s", s)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(e.root, "content", "ingest"))
	if len(ents) != 0 {
		t.Fatalf("ingest leftovers: %d", len(ents))
	}
}
