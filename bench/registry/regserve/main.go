// Command regserve runs an in-memory OCI registry (go-containerregistry's pkg/registry) on a
// loopback address and seeds it with a random image, for the pull benchmark. It prints the
// address, then serves until killed.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func main() {
	layers := flag.Int64("layers", 5, "number of layers")
	size := flag.Int64("size", 40<<20, "bytes per layer")
	repo := flag.String("repo", "bench/pull:latest", "repository:tag to seed")
	flag.Parse()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "regserve:", err)
		os.Exit(1)
	}
	go func() { _ = http.Serve(l, registry.New()) }()
	addr := l.Addr().String()
	img, err := random.Image(*size, *layers)
	if err != nil {
		fmt.Fprintln(os.Stderr, "regserve:", err)
		os.Exit(1)
	}
	ref, err := name.ParseReference(addr+"/"+*repo, name.Insecure)
	if err != nil {
		fmt.Fprintln(os.Stderr, "regserve:", err)
		os.Exit(1)
	}
	if err := remote.Write(ref, img); err != nil {
		fmt.Fprintln(os.Stderr, "regserve: seed:", err)
		os.Exit(1)
	}
	fmt.Println(addr)
	select {}
}
