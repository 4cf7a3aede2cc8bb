package image

import (
	"bytes"
	"io"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker v2 schema 2 media types, accepted on input.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	mediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

func isManifestType(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == mediaTypeDockerManifest
}

func isIndexType(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == mediaTypeDockerManifestList
}

// isLayerType accepts the OCI and Docker layer media types, including non-distributable
// (foreign) ones, which load only when the archive carries their blob.
func isLayerType(mt string) bool {
	switch mt {
	case mediaTypeDockerLayer, mediaTypeDockerLayerGzip, mediaTypeDockerForeignLayer:
		return true
	}
	return strings.HasPrefix(mt, "application/vnd.oci.image.layer.")
}

// sniffLayerType picks the OCI layer media type from a blob's magic bytes.
func sniffLayerType(r io.Reader) string {
	var b [4]byte
	n, _ := io.ReadFull(r, b[:])
	switch {
	case n >= 2 && bytes.Equal(b[:2], []byte{0x1f, 0x8b}):
		return ocispec.MediaTypeImageLayerGzip
	case n == 4 && bytes.Equal(b[:], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return ocispec.MediaTypeImageLayerZstd
	}
	return ocispec.MediaTypeImageLayer
}
