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
	"github.com/moby/moby/api/types/network"
)

type fakeNetworks struct{ calls []string }

func (f *fakeNetworks) NetworkList(_ context.Context, filters Filters) ([]network.Summary, error) {
	f.calls = append(f.calls, "list "+strings.Join(filters["driver"], ","))
	return []network.Summary{{Network: network.Network{Name: "bridge", ID: "b1"}}}, nil
}
func (f *fakeNetworks) NetworkInspect(_ context.Context, ref string) (network.Inspect, error) {
	if ref != "n1" {
		return network.Inspect{}, errdefs.ErrNotFound.WithMessage("network " + ref + " not found")
	}
	return network.Inspect{Network: network.Network{Name: "n1", ID: "id1"}}, nil
}
func (f *fakeNetworks) NetworkCreate(_ context.Context, req network.CreateRequest) (network.CreateResponse, error) {
	f.calls = append(f.calls, "create "+req.Name)
	return network.CreateResponse{ID: "new"}, nil
}
func (f *fakeNetworks) NetworkRemove(_ context.Context, ref string) error {
	f.calls = append(f.calls, "rm "+ref)
	return errdefs.ErrConflict.WithMessage("in use")
}
func (f *fakeNetworks) NetworkConnect(_ context.Context, ref, ctr string, es *network.EndpointSettings) error {
	f.calls = append(f.calls, "connect "+ref+" "+ctr+" "+strings.Join(es.Aliases, ","))
	return nil
}
func (f *fakeNetworks) NetworkDisconnect(_ context.Context, ref, ctr string, force bool) error {
	f.calls = append(f.calls, "disconnect "+ref+" "+ctr)
	return nil
}
func (f *fakeNetworks) NetworksPrune(context.Context, Filters) (network.PruneReport, error) {
	return network.PruneReport{}, nil
}

func TestNetworkRoutes(t *testing.T) {
	fn := &fakeNetworks{}
	srv := httptest.NewServer(New(Config{Networks: fn, Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)
	resp, b := do(t, srv, "GET", `/v1.51/networks?filters={"driver":{"bridge":true}}`, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"Name":"bridge"`) {
		t.Fatalf("list: %d %s", resp.StatusCode, b)
	}
	if resp, b = do(t, srv, "GET", "/networks/nope", nil); resp.StatusCode != 404 {
		t.Fatalf("inspect missing: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, srv, "POST", "/networks/create", strings.NewReader(`{"Name":"n2","Driver":"bridge"}`))
	var cr network.CreateResponse
	if resp.StatusCode != 201 || json.Unmarshal(b, &cr) != nil || cr.ID != "new" {
		t.Fatalf("create: %d %s", resp.StatusCode, b)
	}
	if resp, _ = do(t, srv, "DELETE", "/networks/n1", nil); resp.StatusCode != http.StatusConflict {
		t.Fatalf("rm in use: %d", resp.StatusCode)
	}
	if resp, b = do(t, srv, "POST", "/networks/n1/connect", strings.NewReader(`{"Container":"c1","EndpointConfig":{"Aliases":["a"]}}`)); resp.StatusCode != 200 {
		t.Fatalf("connect: %d %s", resp.StatusCode, b)
	}
	if resp, _ = do(t, srv, "POST", "/networks/n1/disconnect", strings.NewReader(`{}`)); resp.StatusCode != 400 {
		t.Fatalf("disconnect without container: %d", resp.StatusCode)
	}
	if resp, b = do(t, srv, "POST", "/networks/prune", nil); resp.StatusCode != 200 || !strings.Contains(string(b), `"NetworksDeleted":[]`) {
		t.Fatalf("prune: %d %s", resp.StatusCode, b)
	}
	want := []string{"list bridge", "create n2", "rm n1", "connect n1 c1 a"}
	if strings.Join(fn.calls, "|") != strings.Join(want, "|") {
		t.Fatalf("calls %q", fn.calls)
	}
}
