// Package build is berth's classic (non-BuildKit) Dockerfile builder: it parses a Dockerfile,
// runs its instructions one by one on top of images (each step commits an image, as Docker's
// classic builder does), and reuses earlier steps through a layer cache keyed by parent image,
// expanded instruction and, for COPY/ADD, the checksum of the copied files.
//
// The package drives containers and images only through the small Backend interface; it does not
// know the daemon. It must never read outside the build context directory or the root
// filesystems the backend hands it: sources are resolved inside their root (securejoin,
// openat2), and destinations are written with the confined archive.Apply.
package build
