// Package image is berth's image store and the image service behind the Docker API's image
// endpoints: a content-addressed blob store (Root/content/blobs/sha256/<hex>), image and name
// records in bbolt, layer unpacking into the snapshotter (one committed snapshot per chainID,
// shared by all images), docker-archive / OCI-layout load and save, `docker import`, pull from
// and push to registries (through go-containerregistry), and a reference-driven garbage
// collector.
//
// Storage choice: layer blobs are kept exactly as received (gzip, zstd or plain tar), so
// manifest digests stay valid for later push. Each layer record also keeps the digest (diffID)
// and size of the uncompressed tar, so ImageSave can write Docker's uncompressed layer blobs by
// decompressing on the fly with the tar header size known up front. `docker import` stores the
// uncompressed tar, whose digest is its diffID.
//
// It must not know about containers, networks or the HTTP layer beyond the method set of
// api.ImageBackend: containers are consulted only through the SetInUse hook, and it never
// removes a snapshot that is not its own (labelled) layer or temporary unpack snapshot.
package image
