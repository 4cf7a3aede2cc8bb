// Command mkimage writes a docker-archive tarball of a random image (N layers of S bytes each,
// gzip-compressed as registries serve them) for the image benchmarks.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	layers := flag.Int64("layers", 5, "number of layers")
	size := flag.Int64("size", 40<<20, "bytes per layer")
	ref := flag.String("ref", "localhost/bench:latest", "image name")
	out := flag.String("o", "image.tar", "output file")
	flag.Parse()
	img, err := random.Image(*size, *layers)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
	tag, err := name.NewTag(*ref)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
	if err := tarball.WriteToFile(*out, tag, img); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}
