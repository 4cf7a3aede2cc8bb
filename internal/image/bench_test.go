package image_test

import (
	"bytes"
	"context"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BenchmarkLoadSave loads and saves a 64 MiB single-layer image (uncompressed in the archive,
// as `docker save` writes it).
func BenchmarkLoadSave(b *testing.B) {
	l, err := random.Layer(64<<20, types.DockerUncompressedLayer)
	if err != nil {
		b.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		b.Fatal(err)
	}
	data := dockerArchive(b, map[string]v1.Image{"bench:1": img})
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		e := newBenchEnv(b)
		b.StartTimer()
		if _, err := e.svc.ImageLoad(context.Background(), bytes.NewReader(data), nil); err != nil {
			b.Fatal(err)
		}
		var out bytes.Buffer
		if err := e.svc.ImageSave(context.Background(), []string{"bench:1"}, &out); err != nil {
			b.Fatal(err)
		}
	}
}
