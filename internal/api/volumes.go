package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/volume"
)

// volumeListFilters and volumePruneFilters are the filters dockerd accepts.
var (
	volumeListFilters  = []string{"dangling", "driver", "label", "name"}
	volumePruneFilters = []string{"all", "label", "label!"}
)

// VolumeBackend is what the /volumes endpoints need. Errors are classified with errdefs; a
// volume in use is a conflict.
type VolumeBackend interface {
	VolumeCreate(ctx context.Context, req volume.CreateRequest) (volume.Volume, error)
	VolumeList(ctx context.Context, filters Filters) ([]volume.Volume, error)
	VolumeInspect(ctx context.Context, name string) (volume.Volume, error)
	VolumeRemove(ctx context.Context, name string, force bool) error
	// VolumePrune removes unused volumes: anonymous ones only, unless filters has all=true.
	VolumePrune(ctx context.Context, filters Filters) (volume.PruneReport, error)
}

// CommitOptions are the parameters of POST /commit.
type CommitOptions struct {
	Container string
	// Reference is "repo:tag" (tag defaulted to latest), or empty for an untagged image.
	Reference string
	Comment   string
	Author    string
	Changes   []string
	Pause     bool
	// Config, from the body, overrides the container's config in the new image.
	Config *container.Config
}

// CommitBackend is what POST /commit needs.
type CommitBackend interface {
	ContainerCommit(ctx context.Context, opts CommitOptions) (string, error)
}

// DiskUsage is GET /system/df's response in the shape of API < 1.52 (which the Docker CLIs
// negotiate with berth): the object lists, with sizes and reference counts filled in.
type DiskUsage struct {
	LayersSize int64
	Images     []image.Summary
	Containers []container.Summary
	Volumes    []volume.Volume
	BuildCache []any
}

// DiskUsageBackend is what GET /system/df needs.
type DiskUsageBackend interface {
	DiskUsage(ctx context.Context) (DiskUsage, error)
}

func (s *server) storageRoutes() []route {
	return []route{
		parseRoute("GET /volumes", s.volumeList),
		parseRoute("POST /volumes/create", s.volumeCreate),
		parseRoute("POST /volumes/prune", s.volumePrune),
		parseRoute("GET /volumes/{name}", s.volumeInspect),
		parseRoute("DELETE /volumes/{name}", s.volumeDelete),
		parseRoute("PUT /volumes/{name}", s.notImplemented("updating cluster volumes")),
		parseRoute("POST /commit", s.commit),
		parseRoute("GET /system/df", s.systemDF),
		// berth keeps no build cache apart from images, so there is nothing to prune; the
		// docker CLI's `system prune` calls this and fails on a 404. A route for it in the main
		// table, if the builder ever has a cache, takes precedence over this one.
		parseRoute("POST /build/prune", s.buildPrune),
	}
}

func (s *server) buildPrune(_ context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	if err := parseForm(r); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"CachesDeleted": []string{}, "SpaceReclaimed": 0})
	return nil
}

func (s *server) volumes() (VolumeBackend, error) {
	if s.cfg.Volumes == nil {
		return nil, notImplemented(errors.New("volumes are not available"))
	}
	return s.cfg.Volumes, nil
}

func (s *server) volumeList(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	b, err := s.volumes()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	f, err := filtersFromRequest(r, volumeListFilters...)
	if err != nil {
		return err
	}
	list, err := b.VolumeList(ctx, f)
	if err != nil {
		return err
	}
	if list == nil {
		list = []volume.Volume{}
	}
	writeJSON(w, http.StatusOK, volume.ListResponse{Volumes: list, Warnings: []string{}})
	return nil
}

func (s *server) volumeCreate(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	b, err := s.volumes()
	if err != nil {
		return err
	}
	var req volume.CreateRequest
	if err := decodeJSONBody(r.Body, &req); err != nil {
		return err
	}
	if req.ClusterVolumeSpec != nil {
		return notImplemented(errors.New("cluster volumes are not supported by berth"))
	}
	v, err := b.VolumeCreate(ctx, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, v)
	return nil
}

func (s *server) volumeInspect(ctx context.Context, w http.ResponseWriter, _ *http.Request, vars map[string]string) error {
	b, err := s.volumes()
	if err != nil {
		return err
	}
	v, err := b.VolumeInspect(ctx, vars["name"])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *server) volumeDelete(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	b, err := s.volumes()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	if err := b.VolumeRemove(ctx, vars["name"], boolValue(r, "force")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) volumePrune(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	b, err := s.volumes()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	f, err := filtersFromRequest(r, volumePruneFilters...)
	if err != nil {
		return err
	}
	rep, err := b.VolumePrune(ctx, f)
	if err != nil {
		return err
	}
	if rep.VolumesDeleted == nil {
		rep.VolumesDeleted = []string{}
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

func (s *server) commit(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	if s.cfg.Commit == nil {
		return notImplemented(errors.New("commit is not available"))
	}
	if err := parseForm(r); err != nil {
		return err
	}
	opts := CommitOptions{
		Container: r.Form.Get("container"),
		Comment:   r.Form.Get("comment"),
		Author:    r.Form.Get("author"),
		Changes:   r.Form["changes"],
		Pause:     boolValueOrDefault(r, "pause", true),
	}
	if opts.Container == "" {
		return invalidArgument(errors.New("the container parameter is required"))
	}
	ref, err := repoTagReference(r.Form.Get("repo"), r.Form.Get("tag"))
	if err != nil {
		return err
	}
	if ref != nil {
		opts.Reference = ref.String()
	}
	// The body is optional (empty or null): a container config whose set fields override the
	// container's.
	if r.Body != nil {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxJSONBody+1))
		if err != nil {
			return invalidArgument(fmt.Errorf("read request body: %w", err))
		}
		if t := bytes.TrimSpace(body); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
			var cfg container.Config
			if err := decodeJSONBody(bytes.NewReader(t), &cfg); err != nil {
				return err
			}
			opts.Config = &cfg
		}
	}
	id, err := s.cfg.Commit.ContainerCommit(ctx, opts)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, container.CommitResponse{ID: id})
	return nil
}

func (s *server) systemDF(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	if s.cfg.DiskUsage == nil {
		return notImplemented(errors.New("disk usage is not available"))
	}
	if err := parseForm(r); err != nil {
		return err
	}
	for _, t := range r.Form["type"] {
		switch t {
		case "container", "image", "volume", "build-cache":
		default:
			return invalidArgument(errors.New("unknown object type: " + t))
		}
	}
	du, err := s.cfg.DiskUsage.DiskUsage(ctx)
	if err != nil {
		return err
	}
	if du.BuildCache == nil {
		du.BuildCache = []any{}
	}
	writeJSON(w, http.StatusOK, du)
	return nil
}
