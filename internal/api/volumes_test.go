package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/volume"
)

// fakeStorage records the calls of the volume, commit and df endpoints.
type fakeStorage struct {
	commit  CommitOptions
	filters Filters
}

func (f *fakeStorage) VolumeCreate(_ context.Context, req volume.CreateRequest) (volume.Volume, error) {
	return volume.Volume{Name: req.Name, Driver: "local"}, nil
}
func (f *fakeStorage) VolumeList(_ context.Context, fl Filters) ([]volume.Volume, error) {
	f.filters = fl
	return nil, nil
}
func (f *fakeStorage) VolumeInspect(_ context.Context, name string) (volume.Volume, error) {
	return volume.Volume{}, errdefs.ErrNotFound.WithMessage("get " + name + ": no such volume")
}
func (f *fakeStorage) VolumeRemove(_ context.Context, name string, force bool) error {
	return errdefs.ErrConflict.WithMessage("remove " + name + ": volume is in use - [abc]")
}
func (f *fakeStorage) VolumePrune(_ context.Context, fl Filters) (volume.PruneReport, error) {
	f.filters = fl
	return volume.PruneReport{}, nil
}
func (f *fakeStorage) ContainerCommit(_ context.Context, o CommitOptions) (string, error) {
	f.commit = o
	return "sha256:abc", nil
}
func (f *fakeStorage) DiskUsage(context.Context) (DiskUsage, error) {
	return DiskUsage{LayersSize: 7}, nil
}

func TestStorageEndpoints(t *testing.T) {
	fs := &fakeStorage{}
	srv := httptest.NewServer(New(Config{Volumes: fs, Commit: fs, DiskUsage: fs, Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)

	resp, b := do(t, srv, "POST", "/v1.51/volumes/create", strings.NewReader(`{"Name":"v"}`))
	if resp.StatusCode != http.StatusCreated || !strings.Contains(string(b), `"Name":"v"`) {
		t.Errorf("create: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, srv, "GET", `/volumes?filters={"dangling":{"true":true}}`, nil)
	var lr volume.ListResponse
	if resp.StatusCode != 200 || json.Unmarshal(b, &lr) != nil || lr.Volumes == nil || fs.filters["dangling"][0] != "true" {
		t.Errorf("list: %d %s %v", resp.StatusCode, b, fs.filters)
	}
	if resp, _ = do(t, srv, "GET", `/volumes?filters={"bogus":{"x":true}}`, nil); resp.StatusCode != 400 {
		t.Errorf("bad filter: %d", resp.StatusCode)
	}
	if resp, _ = do(t, srv, "GET", "/volumes/nope", nil); resp.StatusCode != 404 {
		t.Errorf("inspect missing: %d", resp.StatusCode)
	}
	resp, b = do(t, srv, "DELETE", "/volumes/v", nil)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(errMessage(t, b), "volume is in use") {
		t.Errorf("remove in use: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, srv, "POST", "/commit?container=c1&repo=myimg&tag=v2&author=me&comment=hi&changes=CMD+ls&changes=ENV+A%3D1&pause=0",
		strings.NewReader(`{"Cmd":["echo"]}`))
	if resp.StatusCode != http.StatusCreated || !strings.Contains(string(b), `"Id":"sha256:abc"`) {
		t.Errorf("commit: %d %s", resp.StatusCode, b)
	}
	c := fs.commit
	if c.Container != "c1" || c.Reference != "docker.io/library/myimg:v2" || c.Author != "me" || c.Comment != "hi" || c.Pause ||
		len(c.Changes) != 2 || c.Config == nil || len(c.Config.Cmd) != 1 {
		t.Errorf("commit options: %+v", c)
	}
	if resp, _ = do(t, srv, "POST", "/commit?container=c1", nil); resp.StatusCode != http.StatusCreated || !fs.commit.Pause || fs.commit.Config != nil {
		t.Errorf("commit defaults: %d %+v", resp.StatusCode, fs.commit)
	}
	if resp, _ = do(t, srv, "POST", "/commit", nil); resp.StatusCode != 400 {
		t.Errorf("commit without container: %d", resp.StatusCode)
	}
	if resp, _ = do(t, srv, "POST", "/commit?container=c&repo=BAD@@", nil); resp.StatusCode != 400 {
		t.Errorf("commit bad repo: %d", resp.StatusCode)
	}
	if resp, b = do(t, srv, "POST", "/build/prune", nil); resp.StatusCode != 200 || !strings.Contains(string(b), `"CachesDeleted":[]`) {
		t.Errorf("build prune: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, srv, "GET", "/system/df", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"LayersSize":7`) || !strings.Contains(string(b), `"BuildCache":[]`) {
		t.Errorf("df: %d %s", resp.StatusCode, b)
	}
}
