package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/jsonstream"
)

var (
	imageListFilters  = []string{"before", "dangling", "label", "label!", "reference", "since", "until"}
	imagePruneFilters = []string{"dangling", "label", "label!", "until"}
)

func (s *server) images() (ImageBackend, error) {
	if s.cfg.Images == nil {
		return nil, notImplemented(errors.New("images are not available"))
	}
	return s.cfg.Images, nil
}

func (s *server) imageList(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	b, err := s.images()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	f, err := filtersFromRequest(r, imageListFilters...)
	if err != nil {
		return err
	}
	// API < 1.41 had a separate `filter` parameter for the reference.
	if v := r.Form.Get("filter"); v != "" {
		f["reference"] = append(f["reference"], v)
	}
	list, err := b.ImageList(ctx, boolValue(r, "all"), f)
	if err != nil {
		return err
	}
	if list == nil {
		list = []image.Summary{}
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *server) imageInspect(ctx context.Context, w http.ResponseWriter, _ *http.Request, vars map[string]string) error {
	b, err := s.images()
	if err != nil {
		return err
	}
	resp, err := b.ImageInspect(ctx, vars["name"])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *server) imageHistory(ctx context.Context, w http.ResponseWriter, _ *http.Request, vars map[string]string) error {
	b, err := s.images()
	if err != nil {
		return err
	}
	h, err := b.ImageHistory(ctx, vars["name"])
	if err != nil {
		return err
	}
	if h == nil {
		h = []image.HistoryResponseItem{}
	}
	writeJSON(w, http.StatusOK, h)
	return nil
}

// repoTagReference combines the repo and tag parameters as dockerd does; nil when repo is empty.
func repoTagReference(repo, tag string) (reference.Named, error) {
	if repo == "" {
		return nil, nil
	}
	ref, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return nil, invalidArgument(fmt.Errorf("invalid reference format %q: %w", repo, err))
	}
	if _, ok := ref.(reference.Digested); ok {
		return nil, invalidArgument(errors.New("cannot use a digest reference as the target name: " + repo))
	}
	if tag != "" {
		if ref, err = reference.WithTag(reference.TrimNamed(ref), tag); err != nil {
			return nil, invalidArgument(fmt.Errorf("invalid tag %q: %w", tag, err))
		}
	}
	return reference.TagNameOnly(ref), nil
}

func (s *server) imageTag(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	b, err := s.images()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	ref, err := repoTagReference(r.Form.Get("repo"), r.Form.Get("tag"))
	if err != nil {
		return err
	}
	if ref == nil {
		return invalidArgument(errors.New("repository name is required (repo parameter)"))
	}
	tagged, ok := ref.(reference.Tagged)
	if !ok {
		return invalidArgument(fmt.Errorf("invalid target name %q", r.Form.Get("repo")))
	}
	if err := b.ImageTag(ctx, vars["name"], reference.FamiliarName(ref), tagged.Tag()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (s *server) imageDelete(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	b, err := s.images()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	name := vars["name"]
	if strings.TrimSpace(name) == "" {
		return invalidArgument(errors.New("image name cannot be blank"))
	}
	list, err := b.ImageDelete(ctx, name, boolValue(r, "force"), boolValue(r, "noprune"))
	if err != nil {
		return err
	}
	if list == nil {
		list = []image.DeleteResponse{}
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *server) imagePrune(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	b, err := s.images()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	f, err := filtersFromRequest(r, imagePruneFilters...)
	if err != nil {
		return err
	}
	all := false
	for _, v := range f["dangling"] {
		switch strings.ToLower(v) {
		case "true", "1":
		case "false", "0":
			all = true
		default:
			return invalidArgument(fmt.Errorf("invalid filter 'dangling=%s'", v))
		}
	}
	delete(f, "dangling")
	report, err := b.ImagePrune(ctx, all, f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, report)
	return nil
}

// streamMessage is a message of Docker's JSON stream. The legacy "error" string is still what
// some clients read, so errors carry it next to errorDetail.
type streamMessage struct {
	jsonstream.Message
	ErrorMessage string `json:"error,omitempty"`
}

// jsonStream writes Docker's JSON message stream, flushing each message. Nothing is sent before
// the first message, so that an early failure can still be answered with a proper status code.
type jsonStream struct {
	w       http.ResponseWriter
	mu      sync.Mutex
	started bool
}

func newJSONStream(w http.ResponseWriter) *jsonStream {
	// Progress is written while the request body is still being read (load, import).
	_ = http.NewResponseController(w).EnableFullDuplex()
	return &jsonStream{w: w}
}

func (js *jsonStream) send(m streamMessage) {
	js.mu.Lock()
	defer js.mu.Unlock()
	if !js.started {
		js.started = true
		js.w.Header().Set("Content-Type", "application/json")
		js.w.WriteHeader(http.StatusOK)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	_, _ = js.w.Write(append(b, '\n'))
	_ = http.NewResponseController(js.w).Flush()
}

func (js *jsonStream) hasStarted() bool {
	js.mu.Lock()
	defer js.mu.Unlock()
	return js.started
}

func (js *jsonStream) progress(m jsonstream.Message) { js.send(streamMessage{Message: m}) }

// fail reports err in the stream if it has started, else returns it for an HTTP error.
func (js *jsonStream) fail(err error) error {
	if !js.hasStarted() {
		return err
	}
	js.send(streamMessage{
		Message:      jsonstream.Message{Error: &jsonstream.Error{Message: err.Error()}},
		ErrorMessage: err.Error(),
	})
	return nil
}

func (s *server) imageLoad(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	b, err := s.images()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	quiet := boolValueOrDefault(r, "quiet", true)
	js := newJSONStream(w)
	progress := func(jsonstream.Message) {}
	if !quiet {
		progress = js.progress
	}
	lines, err := b.ImageLoad(ctx, r.Body, progress)
	if err != nil {
		return js.fail(err)
	}
	for _, l := range lines {
		js.send(streamMessage{Message: jsonstream.Message{Stream: l + "\n"}})
	}
	if !js.hasStarted() {
		js.send(streamMessage{Message: jsonstream.Message{Stream: "No images were loaded\n"}})
	}
	return nil
}

func (s *server) imageCreate(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	b, err := s.images()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	if r.Form.Get("fromImage") != "" {
		return s.imagePull(ctx, w, r)
	}
	src := r.Form.Get("fromSrc")
	switch src {
	case "":
		return invalidArgument(errors.New("either fromImage or fromSrc is required"))
	case "-":
	default:
		return invalidArgument(fmt.Errorf("importing from a URL (fromSrc=%s) is not supported by berth; download the file and import it from the request body (fromSrc=-)", src))
	}
	ref, err := repoTagReference(r.Form.Get("repo"), r.Form.Get("tag"))
	if err != nil {
		return err
	}
	name := ""
	if ref != nil {
		name = reference.FamiliarString(ref)
	}
	message := r.Form.Get("message")
	if message == "" {
		message = "Imported from " + src
	}
	js := newJSONStream(w)
	id, err := b.ImageImport(ctx, r.Body, name, r.Form["changes"], message, js.progress)
	if err != nil {
		return js.fail(err)
	}
	js.send(streamMessage{Message: jsonstream.Message{Status: id}})
	return nil
}

// lazyWriter sets the tar content type and starts the response only on the first write, so that
// a save that fails before writing (unknown image) still gets a JSON error and status code.
type lazyWriter struct {
	w       http.ResponseWriter
	started bool
}

func (lw *lazyWriter) Write(p []byte) (int, error) {
	if !lw.started {
		lw.started = true
		lw.w.Header().Set("Content-Type", "application/x-tar")
		lw.w.WriteHeader(http.StatusOK)
	}
	return lw.w.Write(p)
}

func (s *server) imageSave(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	b, err := s.images()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	names := r.Form["names"]
	if n, ok := vars["name"]; ok {
		names = []string{n}
	}
	if len(names) == 0 {
		return invalidArgument(errors.New("no image names given (names parameter)"))
	}
	lw := &lazyWriter{w: w}
	if err := b.ImageSave(ctx, names, lw); err != nil {
		if !lw.started {
			return err
		}
		// Half a tarball has been sent: break the connection so that the client sees a
		// truncated download instead of a tar that merely looks complete.
		s.log.Warn("image save failed mid-stream", "names", names, "error", err)
		panic(http.ErrAbortHandler)
	}
	if !lw.started {
		// Nothing written and no error: still answer with an (empty) tar content type.
		_, _ = lw.Write(nil)
	}
	return nil
}
