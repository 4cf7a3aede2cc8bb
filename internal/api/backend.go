package api

import (
	"context"
	"io"

	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/system"
)

// Filters are the decoded `filters` query parameter of the Docker API: a filter name mapped to
// the values given for it, e.g. {"dangling": ["true"], "reference": ["busybox*"]}.
type Filters = map[string][]string

// Progress receives progress messages for long operations (load, import, pull). The API server
// streams them to the client as Docker's JSON message stream. Implementations must be safe to
// call from one goroutine at a time; they are never called after the operation returns.
type Progress = func(jsonstream.Message)

// ImageBackend is what the image endpoints need from the daemon. Errors are classified with
// github.com/containerd/errdefs (not found, conflict, invalid argument) so that the server maps
// them onto Docker's status codes.
type ImageBackend interface {
	// ImageList lists images; all includes intermediate images. Filters: dangling, reference,
	// label, before, since.
	ImageList(ctx context.Context, all bool, filters Filters) ([]image.Summary, error)
	// ImageInspect resolves ref (name, short or full ID, or digest reference).
	ImageInspect(ctx context.Context, ref string) (image.InspectResponse, error)
	ImageHistory(ctx context.Context, ref string) ([]image.HistoryResponseItem, error)
	// ImageTag gives the image source the name repo:tag (tag defaults to latest).
	ImageTag(ctx context.Context, source, repo, tag string) error
	// ImageDelete untags ref, and deletes the image when no name refers to it any more.
	// force removes an image with several names or used by stopped containers; noprune keeps
	// untagged parents.
	ImageDelete(ctx context.Context, ref string, force, noprune bool) ([]image.DeleteResponse, error)
	// ImagePrune removes dangling images, or all unused ones when all is true.
	ImagePrune(ctx context.Context, all bool, filters Filters) (image.PruneReport, error)
	// ImageLoad reads a docker-archive or OCI-layout tarball and returns one line per loaded
	// image, e.g. "Loaded image: busybox:latest" or "Loaded image ID: sha256:...".
	ImageLoad(ctx context.Context, r io.Reader, progress Progress) ([]string, error)
	// ImageSave writes the named images as one docker-archive tarball (which also carries an
	// OCI index.json and oci-layout, as Docker 25+ writes it).
	ImageSave(ctx context.Context, refs []string, w io.Writer) error
	// ImageImport creates a one-layer image from a root filesystem tarball (possibly
	// compressed), applies Dockerfile-style changes (CMD, ENV, ...), and tags it as ref when ref
	// is not empty. It returns the image ID.
	ImageImport(ctx context.Context, src io.Reader, ref string, changes []string, message string, progress Progress) (string, error)
}

// SystemBackend is what GET /info needs from the daemon.
type SystemBackend interface {
	Info(ctx context.Context) (system.Info, error)
}
