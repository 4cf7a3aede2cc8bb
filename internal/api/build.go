package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/jsonstream"
)

// BuildOptions are the query parameters of POST /build that berth's classic builder honours.
type BuildOptions struct {
	Tags       []string
	Dockerfile string
	Target     string
	NoCache    bool
	Quiet      bool
	BuildArgs  map[string]*string
	Labels     map[string]string
	// NetworkMode is the network of RUN containers ("" or "default": the daemon's default).
	NetworkMode string
}

// BuildBackend is what POST /build needs: run a build of the context tar, writing Docker's
// classic progress text to out, and return the image ID.
type BuildBackend interface {
	Build(ctx context.Context, opts BuildOptions, contextTar io.Reader, out io.Writer) (string, error)
}

// streamWriter turns each write into a {"stream": ...} message.
type streamWriter struct {
	js *jsonStream
	mu sync.Mutex
}

func (s *streamWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.js.send(streamMessage{Message: jsonstream.Message{Stream: string(p)}})
	return len(p), nil
}

func (s *server) build(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	b := s.cfg.Build
	if b == nil {
		return errdefs.ErrNotImplemented.WithMessage("building images is not available")
	}
	if err := parseForm(r); err != nil {
		return err
	}
	if v := r.Form.Get("version"); v == "2" {
		return errdefs.ErrNotImplemented.WithMessage("BuildKit is not supported by berth; use the classic builder (DOCKER_BUILDKIT=0)")
	}
	if r.Form.Get("remote") != "" {
		return errdefs.ErrNotImplemented.WithMessage("remote build contexts are not supported: send the context as a tar")
	}
	opts := BuildOptions{
		Tags:        r.Form["t"],
		Dockerfile:  r.Form.Get("dockerfile"),
		Target:      r.Form.Get("target"),
		NoCache:     boolValue(r, "nocache"),
		Quiet:       boolValue(r, "q"),
		NetworkMode: r.Form.Get("networkmode"),
	}
	if v := r.Form.Get("buildargs"); v != "" {
		if err := json.Unmarshal([]byte(v), &opts.BuildArgs); err != nil {
			return invalidArgument(fmt.Errorf("invalid buildargs: %w", err))
		}
	}
	if v := r.Form.Get("labels"); v != "" {
		if err := json.Unmarshal([]byte(v), &opts.Labels); err != nil {
			return invalidArgument(fmt.Errorf("invalid labels: %w", err))
		}
	}
	js := newJSONStream(w)
	id, err := b.Build(ctx, opts, r.Body, &streamWriter{js: js})
	if err != nil {
		// Before any output (bad tag, Dockerfile parse error) the error gets its status code,
		// as Docker's; later it ends the stream as errorDetail.
		return js.fail(err)
	}
	aux, _ := json.Marshal(map[string]string{"ID": id})
	raw := json.RawMessage(aux)
	js.send(streamMessage{Message: jsonstream.Message{Aux: &raw}})
	return nil
}
