package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/moby/moby/api/types/network"
)

// NetworkBackend is what the /networks endpoints need from the daemon. Errors are classified
// with github.com/containerd/errdefs.
type NetworkBackend interface {
	NetworkList(ctx context.Context, filters Filters) ([]network.Summary, error)
	NetworkInspect(ctx context.Context, ref string) (network.Inspect, error)
	NetworkCreate(ctx context.Context, req network.CreateRequest) (network.CreateResponse, error)
	NetworkRemove(ctx context.Context, ref string) error
	NetworkConnect(ctx context.Context, ref, container string, es *network.EndpointSettings) error
	NetworkDisconnect(ctx context.Context, ref, container string, force bool) error
	NetworksPrune(ctx context.Context, filters Filters) (network.PruneReport, error)
}

func (s *server) networkRoutes() []route {
	table := []struct {
		pattern string
		h       handlerFunc
	}{
		{"GET /networks", s.networkList},
		{"POST /networks/create", s.networkCreate},
		{"POST /networks/prune", s.networkPrune},
		{"GET /networks/{name}", s.networkInspect},
		{"DELETE /networks/{name}", s.networkDelete},
		{"POST /networks/{name}/connect", s.networkConnect},
		{"POST /networks/{name}/disconnect", s.networkDisconnect},
	}
	var out []route
	for _, e := range table {
		out = append(out, parseRoute(e.pattern, e.h))
	}
	return out
}

func (s *server) networks() (NetworkBackend, error) {
	if s.cfg.Networks == nil {
		return nil, notImplemented(errors.New("networks are not available"))
	}
	return s.cfg.Networks, nil
}

func (s *server) networkList(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	b, err := s.networks()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	f, err := filtersFromRequest(r, "name", "id", "driver", "label", "type", "scope", "dangling")
	if err != nil {
		return err
	}
	list, err := b.NetworkList(ctx, f)
	if err != nil {
		return err
	}
	if list == nil {
		list = []network.Summary{}
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *server) networkInspect(ctx context.Context, w http.ResponseWriter, r *http.Request, v map[string]string) error {
	b, err := s.networks()
	if err != nil {
		return err
	}
	n, err := b.NetworkInspect(ctx, v["name"])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, n)
	return nil
}

func (s *server) networkCreate(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	b, err := s.networks()
	if err != nil {
		return err
	}
	var req network.CreateRequest
	if err := decodeJSONBody(r.Body, &req); err != nil {
		return err
	}
	resp, err := b.NetworkCreate(ctx, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, resp)
	return nil
}

func (s *server) networkDelete(ctx context.Context, w http.ResponseWriter, r *http.Request, v map[string]string) error {
	b, err := s.networks()
	if err != nil {
		return err
	}
	if err := b.NetworkRemove(ctx, v["name"]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) networkConnect(ctx context.Context, w http.ResponseWriter, r *http.Request, v map[string]string) error {
	b, err := s.networks()
	if err != nil {
		return err
	}
	var req network.ConnectRequest
	if err := decodeJSONBody(r.Body, &req); err != nil {
		return err
	}
	if req.Container == "" {
		return invalidArgument(errors.New("container is required"))
	}
	if err := b.NetworkConnect(ctx, v["name"], req.Container, req.EndpointConfig); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *server) networkDisconnect(ctx context.Context, w http.ResponseWriter, r *http.Request, v map[string]string) error {
	b, err := s.networks()
	if err != nil {
		return err
	}
	var req network.DisconnectRequest
	if err := decodeJSONBody(r.Body, &req); err != nil {
		return err
	}
	if req.Container == "" {
		return invalidArgument(errors.New("container is required"))
	}
	if err := b.NetworkDisconnect(ctx, v["name"], req.Container, req.Force); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *server) networkPrune(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	b, err := s.networks()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	f, err := filtersFromRequest(r, "label", "label!", "until")
	if err != nil {
		return err
	}
	rep, err := b.NetworksPrune(ctx, f)
	if err != nil {
		return err
	}
	if rep.NetworksDeleted == nil {
		rep.NetworksDeleted = []string{}
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}
