package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
)

var (
	// containerListFilters are the filters dockerd accepts on GET /containers/json.
	containerListFilters = []string{"ancestor", "annotation", "before", "expose", "exited", "health", "id", "isolation",
		"is-task", "label", "name", "network", "publish", "since", "status", "volume"}
	containerPruneFilters = []string{"label", "label!", "until"}
)

const (
	mediaTypeRawStream         = "application/vnd.docker.raw-stream"
	mediaTypeMultiplexedStream = "application/vnd.docker.multiplexed-stream"

	// maxJSONBody bounds the JSON bodies of create, update and exec requests, so that a client
	// cannot make the daemon buffer an unbounded amount of memory; real ones are kilobytes.
	maxJSONBody = 16 << 20

	// stdcopy stream number for errors from the daemon; the Docker client's stdcopy.StdCopy
	// returns a frame with it as an error.
	streamSystemErr = 3
)

func (s *server) containers() (ContainerBackend, error) {
	if s.cfg.Containers == nil {
		return nil, notImplemented(errors.New("containers are not available"))
	}
	return s.cfg.Containers, nil
}

// streamContentType is the media type of a log, attach or exec stream. Clients before API 1.42
// were told raw-stream even when the data was multiplexed; they know from the TTY setting.
func streamContentType(ctx context.Context, tty bool) string {
	if !tty && compareVersions(APIVersionFromContext(ctx), "1.42") >= 0 {
		return mediaTypeMultiplexedStream
	}
	return mediaTypeRawStream
}

// decodeJSONBody decodes a request body that must hold exactly one JSON value, with dockerd's
// messages, as an invalid-argument error on any problem.
func decodeJSONBody(body io.Reader, v any) error {
	if body == nil {
		return invalidArgument(errors.New("invalid JSON: got EOF while reading request body"))
	}
	dec := json.NewDecoder(io.LimitReader(body, maxJSONBody))
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return invalidArgument(errors.New("invalid JSON: got EOF while reading request body"))
		}
		return invalidArgument(fmt.Errorf("invalid JSON: %w", err))
	}
	// A body over the limit has failed above, cut short; what may follow a value is whitespace.
	if dec.More() {
		return invalidArgument(errors.New("invalid JSON: unexpected content after JSON"))
	}
	return nil
}

// decodeCreateRequest parses the body of POST /containers/create.
func decodeCreateRequest(body io.Reader) (container.CreateRequest, error) {
	var req container.CreateRequest
	if err := decodeJSONBody(body, &req); err != nil {
		return container.CreateRequest{}, err
	}
	if req.Config == nil {
		return container.CreateRequest{}, invalidArgument(errors.New("config cannot be empty in order to create a container"))
	}
	if req.HostConfig == nil {
		req.HostConfig = &container.HostConfig{}
	}
	return req, nil
}

// checkPlatform validates the platform parameter of create ("os[/arch[/variant]]"). berth runs
// Linux containers only; the architecture is left to the image lookup.
func checkPlatform(p string) error {
	if p == "" {
		return nil
	}
	parts := strings.Split(p, "/")
	if len(parts) > 3 || slices.Contains(parts, "") {
		return invalidArgument(fmt.Errorf("invalid platform %q: use os[/arch[/variant]]", p))
	}
	if !strings.EqualFold(parts[0], "linux") {
		return invalidArgument(fmt.Errorf("platform %q is not supported: berth runs linux containers only", p))
	}
	return nil
}

func (s *server) containerCreate(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	if err := parseQuery(r); err != nil {
		return err
	}
	if err := checkPlatform(r.Form.Get("platform")); err != nil {
		return err
	}
	req, err := decodeCreateRequest(r.Body)
	if err != nil {
		return err
	}
	resp, err := b.ContainerCreate(ctx, r.Form.Get("name"), req.Config, req.HostConfig, req.NetworkingConfig)
	if err != nil {
		return err
	}
	if resp.Warnings == nil {
		resp.Warnings = []string{}
	}
	writeJSON(w, http.StatusCreated, resp)
	return nil
}

// simpleAction is an endpoint that calls the backend and answers 204 No Content.
func (s *server) simpleAction(call func(ctx context.Context, b ContainerBackend, r *http.Request, name string) error) handlerFunc {
	return func(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
		b, err := s.containers()
		if err != nil {
			return err
		}
		if err := parseForm(r); err != nil {
			return err
		}
		if err := call(ctx, b, r, vars["name"]); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

func (s *server) containerStart(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	// As dockerd: a host config in the start body was removed in API 1.24, and a non-empty JSON
	// object is at least 7 bytes ({"A":1}), so "{}" and "null" are still tolerated.
	if r.ContentLength > 7 || r.ContentLength == -1 {
		return invalidArgument(errors.New("starting container with non-empty request body was deprecated since API v1.22 and removed in v1.24"))
	}
	return s.simpleAction(func(ctx context.Context, b ContainerBackend, r *http.Request, name string) error {
		if r.Form.Get("checkpoint") != "" || r.Form.Get("checkpoint-dir") != "" {
			return notImplemented(errors.New("checkpoints are not supported by berth"))
		}
		return b.ContainerStart(ctx, name)
	})(ctx, w, r, vars)
}

// stopTimeout reads the `t` parameter of stop and restart: nil when absent (the container's
// StopTimeout applies), a number of seconds otherwise (-1 waits forever, as in Docker).
func stopTimeout(r *http.Request) (*int, error) {
	v := r.Form.Get("t")
	if v == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return nil, invalidArgument(fmt.Errorf("invalid value for t (%q): must be a whole number of seconds", v))
	}
	return &n, nil
}

func (s *server) containerStop(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	return s.simpleAction(func(ctx context.Context, b ContainerBackend, r *http.Request, name string) error {
		t, err := stopTimeout(r)
		if err != nil {
			return err
		}
		return b.ContainerStop(ctx, name, r.Form.Get("signal"), t)
	})(ctx, w, r, vars)
}

func (s *server) containerRestart(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	return s.simpleAction(func(ctx context.Context, b ContainerBackend, r *http.Request, name string) error {
		t, err := stopTimeout(r)
		if err != nil {
			return err
		}
		return b.ContainerRestart(ctx, name, r.Form.Get("signal"), t)
	})(ctx, w, r, vars)
}

func (s *server) containerKill(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	return s.simpleAction(func(ctx context.Context, b ContainerBackend, r *http.Request, name string) error {
		return b.ContainerKill(ctx, name, r.Form.Get("signal"))
	})(ctx, w, r, vars)
}

func (s *server) containerPause(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	return s.simpleAction(func(ctx context.Context, b ContainerBackend, _ *http.Request, name string) error {
		return b.ContainerPause(ctx, name)
	})(ctx, w, r, vars)
}

func (s *server) containerUnpause(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	return s.simpleAction(func(ctx context.Context, b ContainerBackend, _ *http.Request, name string) error {
		return b.ContainerUnpause(ctx, name)
	})(ctx, w, r, vars)
}

func (s *server) containerRename(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	return s.simpleAction(func(ctx context.Context, b ContainerBackend, r *http.Request, name string) error {
		newName := r.Form.Get("name")
		if strings.TrimSpace(newName) == "" {
			return invalidArgument(errors.New("new name is required (name parameter)"))
		}
		return b.ContainerRename(ctx, name, newName)
	})(ctx, w, r, vars)
}

func (s *server) containerDelete(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	return s.simpleAction(func(ctx context.Context, b ContainerBackend, r *http.Request, name string) error {
		if strings.TrimSpace(name) == "" {
			return invalidArgument(errors.New("container name cannot be blank"))
		}
		if boolValue(r, "link") {
			return notImplemented(errors.New("legacy container links are not supported by berth, so there is no link to remove"))
		}
		return b.ContainerRemove(ctx, name, boolValue(r, "force"), boolValue(r, "v"))
	})(ctx, w, r, vars)
}

// terminalSize reads the h and w parameters of the resize endpoints.
func terminalSize(r *http.Request) (height, width uint16, err error) {
	parse := func(key string) (uint16, error) {
		v := r.Form.Get(key)
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return 0, invalidArgument(fmt.Errorf("invalid value for %s (%q): must be a number from 0 to 65535", key, v))
		}
		return uint16(n), nil
	}
	if height, err = parse("h"); err != nil {
		return 0, 0, err
	}
	if width, err = parse("w"); err != nil {
		return 0, 0, err
	}
	return height, width, nil
}

func (s *server) containerResize(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	h, wd, err := terminalSize(r)
	if err != nil {
		return err
	}
	if err := b.ContainerResize(ctx, vars["name"], h, wd); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *server) containerUpdate(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	var u container.UpdateConfig
	if err := decodeJSONBody(r.Body, &u); err != nil {
		return err
	}
	resp, err := b.ContainerUpdate(ctx, vars["name"], u)
	if err != nil {
		return err
	}
	if resp.Warnings == nil {
		resp.Warnings = []string{}
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *server) containerPrune(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	f, err := filtersFromRequest(r, containerPruneFilters...)
	if err != nil {
		return err
	}
	report, err := b.ContainersPrune(ctx, f)
	if err != nil {
		return err
	}
	if report.ContainersDeleted == nil {
		report.ContainersDeleted = []string{}
	}
	writeJSON(w, http.StatusOK, report)
	return nil
}

func (s *server) containerList(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	f, err := filtersFromRequest(r, containerListFilters...)
	if err != nil {
		return err
	}
	limit := 0
	if v := r.Form.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil {
			return invalidArgument(fmt.Errorf("invalid value for limit (%q): must be a whole number", v))
		}
	}
	list, err := b.ContainerList(ctx, boolValue(r, "all"), limit, boolValue(r, "size"), f)
	if err != nil {
		return err
	}
	if list == nil {
		list = []container.Summary{}
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *server) containerInspect(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	resp, err := b.ContainerInspect(ctx, vars["name"], boolValue(r, "size"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *server) containerTop(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	resp, err := b.ContainerTop(ctx, vars["name"], r.Form.Get("ps_args"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *server) containerChanges(ctx context.Context, w http.ResponseWriter, _ *http.Request, vars map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	changes, err := b.ContainerChanges(ctx, vars["name"])
	if err != nil {
		return err
	}
	if changes == nil {
		changes = []container.FilesystemChange{}
	}
	writeJSON(w, http.StatusOK, changes)
	return nil
}

func (s *server) containerExport(ctx context.Context, w http.ResponseWriter, _ *http.Request, vars map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	lw := &lazyWriter{w: w}
	if err := b.ContainerExport(ctx, vars["name"], lw); err != nil {
		if !lw.started {
			return err
		}
		// As for image save: cut the connection so that a truncated tar is not taken for whole.
		s.log.Warn("container export failed mid-stream", "container", vars["name"], "error", err)
		panic(http.ErrAbortHandler)
	}
	if !lw.started {
		_, _ = lw.Write(nil)
	}
	return nil
}

func (s *server) containerStats(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	stream := boolValueOrDefault(r, "stream", true)
	if stream && boolValue(r, "one-shot") {
		return invalidArgument(errors.New("cannot have stream=true and one-shot=true"))
	}
	started := false
	enc := json.NewEncoder(w)
	emit := func(st container.StatsResponse) error {
		if !started {
			// Headers wait for the first sample, so that "No such container" is still a 404.
			started = true
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
		}
		if err := enc.Encode(st); err != nil {
			return fmt.Errorf("send stats: %w", err)
		}
		return http.NewResponseController(w).Flush()
	}
	err = b.ContainerStats(ctx, vars["name"], stream, emit)
	if err != nil && started && ctx.Err() != nil {
		return nil // the client went away
	}
	if err == nil && !started {
		// A backend that had nothing to report still owes the client a valid (empty) answer.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
	}
	return err
}

// logTimestamp parses since/until of the logs endpoint; "" and "0" mean no bound, as in dockerd.
func logTimestamp(s string) (time.Time, error) {
	if s == "" || s == "0" {
		return time.Time{}, nil
	}
	return parseTimestamp(s)
}

func (s *server) containerLogs(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	opts := LogsOptions{
		Stdout:     boolValue(r, "stdout"),
		Stderr:     boolValue(r, "stderr"),
		Follow:     boolValue(r, "follow"),
		Timestamps: boolValue(r, "timestamps"),
		Tail:       r.Form.Get("tail"),
	}
	if !opts.Stdout && !opts.Stderr {
		//lint:ignore ST1005 dockerd's message, which clients may match
		return invalidArgument(errors.New("Bad parameters: you must choose at least one stream"))
	}
	since, err := logTimestamp(r.Form.Get("since"))
	if err != nil {
		return err
	}
	until, err := logTimestamp(r.Form.Get("until"))
	if err != nil {
		return err
	}
	opts.Since, opts.Until = since, until
	rc, tty, err := b.ContainerLogs(ctx, vars["name"], opts)
	if err != nil {
		return err
	}
	defer rc.Close()
	w.Header().Set("Content-Type", streamContentType(ctx, tty))
	w.WriteHeader(http.StatusOK)
	rctl := http.NewResponseController(w)
	// Flushed at once: `logs -f` of a quiet container must see the response start.
	_ = rctl.Flush()
	buf := make([]byte, 32<<10)
	for {
		n, rerr := rc.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return nil // the client went away
			}
			_ = rctl.Flush()
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return nil
			}
			// As dockerd: report in band, where the Docker client's stdcopy turns a system-error
			// frame into an error; a TTY stream can only carry text.
			writeStreamError(w, !tty, "Error grabbing logs: "+rerr.Error())
			_ = rctl.Flush()
			return rerr
		}
	}
}

// writeStreamError writes msg into an attach, exec or logs stream: as a system-error frame when
// the stream is multiplexed, as a line of text otherwise.
func writeStreamError(w io.Writer, multiplexed bool, msg string) {
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	if !multiplexed {
		_, _ = io.WriteString(w, msg)
		return
	}
	var frame bytes.Buffer
	hdr := [8]byte{streamSystemErr}
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(msg)))
	frame.Write(hdr[:])
	frame.WriteString(msg)
	_, _ = w.Write(frame.Bytes())
}

// waitBody is Docker's wait response, with Error always present (null without an error) as
// dockerd writes it; container.WaitResponse omits it.
type waitBody struct {
	StatusCode int64                    `json:"StatusCode"`
	Error      *container.WaitExitError `json:"Error"`
}

func (s *server) containerWait(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	cond := container.WaitCondition(r.Form.Get("condition"))
	switch cond {
	case "":
		cond = container.WaitConditionNotRunning
	case container.WaitConditionNotRunning, container.WaitConditionNextExit, container.WaitConditionRemoved:
	default:
		return invalidArgument(fmt.Errorf("invalid condition: %q (use not-running, next-exit or removed)", string(cond)))
	}
	ch, err := b.ContainerWait(ctx, vars["name"], cond)
	if err != nil {
		return err
	}
	// The Docker client waits for the response headers before it starts the container (docker
	// run calls wait first), so they go out now and the body when the condition is met.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()
	var body waitBody
	select {
	case <-ctx.Done():
		return nil
	case res, ok := <-ch:
		if !ok {
			body = waitBody{StatusCode: -1, Error: &container.WaitExitError{Message: "the wait ended without a result (is the daemon shutting down?)"}}
			break
		}
		body = waitBody{StatusCode: res.StatusCode, Error: res.Error}
	}
	if err := json.NewEncoder(w).Encode(body); err != nil {
		return fmt.Errorf("send wait result: %w", err)
	}
	return nil
}

func (s *server) containerAttach(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	name := vars["name"]
	opts := AttachOptions{
		Stdin:      boolValue(r, "stdin"),
		Stdout:     boolValue(r, "stdout"),
		Stderr:     boolValue(r, "stderr"),
		Stream:     boolValue(r, "stream"),
		Logs:       boolValue(r, "logs"),
		DetachKeys: r.Form.Get("detachKeys"),
	}
	// The stream's media type depends on the container's TTY, and the status line goes out at
	// the upgrade; ask now (this also answers "No such container" as a plain 404).
	info, err := b.ContainerInspect(ctx, name, false)
	if err != nil {
		return err
	}
	tty := info.Config != nil && info.Config.Tty
	h := newHijack(w, r, streamContentType(ctx, tty))
	return h.finish(b.ContainerAttach(ctx, name, opts, h.upgrade), !tty)
}

// archivePath reads the required path parameter of the archive endpoints.
func archivePath(r *http.Request) (string, error) {
	p := r.Form.Get("path")
	if p == "" {
		return "", invalidArgument(errors.New("path cannot be empty (path parameter)"))
	}
	return p, nil
}

// setPathStatHeader sets X-Docker-Container-Path-Stat: base64 of the PathStat JSON.
func setPathStatHeader(h http.Header, st container.PathStat) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode path stat: %w", err)
	}
	h.Set("X-Docker-Container-Path-Stat", base64.StdEncoding.EncodeToString(b))
	return nil
}

func (s *server) containerArchiveStat(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	p, err := archivePath(r)
	if err != nil {
		return err
	}
	st, err := b.ContainerStatPath(ctx, vars["name"], p)
	if err != nil {
		return err
	}
	if err := setPathStatHeader(w.Header(), st); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *server) containerArchiveGet(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	p, err := archivePath(r)
	if err != nil {
		return err
	}
	rc, st, err := b.ContainerArchive(ctx, vars["name"], p)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := setPathStatHeader(w.Header(), st); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, rc); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("container archive failed mid-stream", "container", vars["name"], "path", p, "error", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

func (s *server) containerArchivePut(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	if err := parseQuery(r); err != nil {
		return err
	}
	p, err := archivePath(r)
	if err != nil {
		return err
	}
	opts := ArchiveOptions{NoOverwriteDirNonDir: boolValue(r, "noOverwriteDirNonDir"), CopyUIDGID: boolValue(r, "copyUIDGID")}
	if err := b.ContainerExtract(ctx, vars["name"], p, opts, r.Body); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// parseQuery fills r.Form from the query string only, for endpoints whose body is data (a tar,
// JSON): ParseForm would consume a body sent as application/x-www-form-urlencoded.
func parseQuery(r *http.Request) error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return invalidArgument(fmt.Errorf("invalid request: %w", err))
	}
	r.Form = q
	return nil
}
