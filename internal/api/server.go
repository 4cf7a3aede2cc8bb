// Package api is berth's HTTP server for the Docker Engine REST API: version negotiation, routing
// (image names may contain slashes and ports), Docker's error mapping and streaming responses. It
// translates HTTP requests into calls on small backend interfaces; it must not hold state of its
// own, touch the disk, or know how images or containers are stored.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/version"
)

const (
	// MaxAPIVersion is the newest Docker Engine API version berth serves.
	MaxAPIVersion = version.APIVersion
	// MinAPIVersion is the oldest Docker Engine API version berth accepts, as dockerd.
	MinAPIVersion = version.MinAPIVersion
)

// Config is what the API server is built from. Nil backends make their endpoints answer 501.
type Config struct {
	Images ImageBackend
	// Registry serves pull, push and /auth; when nil, Images is used if it implements it.
	Registry   RegistryBackend
	Containers ContainerBackend
	System     SystemBackend
	Networks   NetworkBackend
	Volumes    VolumeBackend
	Commit     CommitBackend
	Build      BuildBackend
	DiskUsage  DiskUsageBackend
	Events     *events.Bus
	Logger     *slog.Logger
	Version    string // berth's version, reported in /version and the Server header
}

// server holds the immutable configuration and route table; it is safe for concurrent use.
type server struct {
	cfg    Config
	log    *slog.Logger
	routes []route
}

// handlerFunc is an endpoint: it writes a successful response itself, or returns an error that
// the server turns into Docker's {"message": ...} with the mapped status code.
type handlerFunc func(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error

// route matches "METHOD /prefix{name}/suffix". With a variable, the variable takes everything
// between prefix and suffix, slashes included, because image references contain slashes
// (localhost:5000/a/b:tag), as Docker's {name:.*}.
type route struct {
	method string
	prefix string
	name   string // variable name; empty for exact routes
	suffix string
	h      handlerFunc
}

func (rt route) match(method, path string) (map[string]string, bool) {
	if rt.method != method {
		return nil, false
	}
	if rt.name == "" {
		return nil, path == rt.prefix
	}
	if len(path) <= len(rt.prefix)+len(rt.suffix) || !strings.HasPrefix(path, rt.prefix) || !strings.HasSuffix(path, rt.suffix) {
		return nil, false
	}
	return map[string]string{rt.name: path[len(rt.prefix) : len(path)-len(rt.suffix)]}, true
}

// parseRoute turns "GET /images/{name}/json" into a route.
func parseRoute(pattern string, h handlerFunc) route {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		panic("api: bad route pattern " + pattern) // programming error in the constant table
	}
	rt := route{method: method, prefix: path, h: h}
	if i := strings.Index(path, "{"); i >= 0 {
		j := strings.Index(path, "}")
		rt.prefix, rt.name, rt.suffix = path[:i], path[i+1:j], path[j+1:]
	}
	return rt
}

// New returns the API handler.
func New(cfg Config) http.Handler {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	s := &server{cfg: cfg, log: log}
	// Exact routes come before variable ones so that /images/json is the list, not an image.
	table := []struct {
		pattern string
		h       handlerFunc
	}{
		{"GET /_ping", s.ping},
		{"HEAD /_ping", s.ping},
		{"GET /version", s.version},
		{"GET /info", s.info},
		{"GET /events", s.events},
		{"POST /auth", s.auth},
		{"GET /images/json", s.imageList},
		{"POST /images/create", s.imageCreate},
		{"POST /images/load", s.imageLoad},
		{"GET /images/get", s.imageSave},
		{"POST /images/prune", s.imagePrune},
		{"GET /images/search", s.notImplemented("searching registries")},
		{"GET /images/{name}/json", s.imageInspect},
		{"GET /images/{name}/history", s.imageHistory},
		{"GET /images/{name}/get", s.imageSave},
		{"POST /images/{name}/tag", s.imageTag},
		{"POST /images/{name}/push", s.imagePush},
		{"DELETE /images/{name}", s.imageDelete},
		{"GET /containers/json", s.containerList},
		{"POST /containers/create", s.containerCreate},
		{"POST /containers/prune", s.containerPrune},
		{"GET /containers/{name}/json", s.containerInspect},
		{"GET /containers/{name}/top", s.containerTop},
		{"GET /containers/{name}/logs", s.containerLogs},
		{"GET /containers/{name}/changes", s.containerChanges},
		{"GET /containers/{name}/export", s.containerExport},
		{"GET /containers/{name}/stats", s.containerStats},
		{"GET /containers/{name}/attach/ws", s.notImplemented("attaching over a websocket")},
		{"HEAD /containers/{name}/archive", s.containerArchiveStat},
		{"GET /containers/{name}/archive", s.containerArchiveGet},
		{"PUT /containers/{name}/archive", s.containerArchivePut},
		{"POST /containers/{name}/start", s.containerStart},
		{"POST /containers/{name}/stop", s.containerStop},
		{"POST /containers/{name}/restart", s.containerRestart},
		{"POST /containers/{name}/kill", s.containerKill},
		{"POST /containers/{name}/pause", s.containerPause},
		{"POST /containers/{name}/unpause", s.containerUnpause},
		{"POST /containers/{name}/rename", s.containerRename},
		{"POST /containers/{name}/resize", s.containerResize},
		{"POST /containers/{name}/update", s.containerUpdate},
		{"POST /containers/{name}/wait", s.containerWait},
		{"POST /containers/{name}/attach", s.containerAttach},
		{"POST /containers/{name}/exec", s.execCreate},
		{"DELETE /containers/{name}", s.containerDelete},
		{"POST /exec/{name}/start", s.execStart},
		{"POST /exec/{name}/resize", s.execResize},
		{"GET /exec/{name}/json", s.execInspect},
		{"POST /build", s.build},
	}
	for _, e := range table {
		s.routes = append(s.routes, parseRoute(e.pattern, e.h))
	}
	s.routes = append(s.routes, s.storageRoutes()...)
	s.routes = append(s.routes, s.networkRoutes()...)
	return s
}

// splitVersion splits "/v1.51/rest" into "1.51" and "/rest" (ok false when path has no
// ^/v([0-9]+\.[0-9]+)(/.*)$ prefix). By hand: a package-level regexp would be compiled in every
// berth process at start-up, and this runs on every request.
func splitVersion(path string) (version, rest string, ok bool) {
	if !strings.HasPrefix(path, "/v") {
		return "", "", false
	}
	slash := strings.IndexByte(path[2:], '/')
	if slash < 0 {
		return "", "", false
	}
	v := path[2 : 2+slash]
	major, minor, found := strings.Cut(v, ".")
	if !found || !allDigits(major) || !allDigits(minor) {
		return "", "", false
	}
	return v, path[2+slash:], true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

type ctxKey int

const versionKey ctxKey = 0

// APIVersionFromContext returns the API version of the request (the negotiated prefix, or the
// newest when the client sent none).
func APIVersionFromContext(ctx context.Context) string {
	if v, ok := ctx.Value(versionKey).(string); ok {
		return v
	}
	return MaxAPIVersion
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &responseWriter{ResponseWriter: w}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as net/http does
				panic(p)
			}
			s.log.Error("panic in API handler", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			if !rw.wroteHeader {
				writeError(rw, fmt.Errorf("internal server error: %v", p))
			}
		}
		s.log.Debug("API request", "method", r.Method, "path", r.URL.Path, "query", r.URL.RawQuery,
			"status", rw.statusCode(), "duration", time.Since(start))
	}()

	h := rw.Header()
	h.Set("Server", "Berth/"+s.cfg.Version+" (linux)")
	h.Set("Api-Version", MaxAPIVersion)
	h.Set("Ostype", "linux")

	path := r.URL.Path
	ctx := r.Context()
	if v, rest, ok := splitVersion(path); ok {
		if compareVersions(v, MaxAPIVersion) > 0 {
			writeError(rw, invalidArgument(fmt.Errorf("client version %s is too new. Maximum supported API version is %s", v, MaxAPIVersion)))
			return
		}
		if compareVersions(v, MinAPIVersion) < 0 {
			writeError(rw, invalidArgument(fmt.Errorf("client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version", v, MinAPIVersion)))
			return
		}
		ctx = context.WithValue(ctx, versionKey, v)
		path = rest
	}
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	for _, rt := range s.routes {
		vars, ok := rt.match(r.Method, path)
		if !ok {
			continue
		}
		if err := rt.h(ctx, rw, r.WithContext(ctx), vars); err != nil {
			if rw.wroteHeader {
				// The response has started; all we can do is log and cut it short.
				s.log.Warn("API request failed after the response started", "method", r.Method, "path", r.URL.Path, "error", err)
				return
			}
			status := statusFromError(err)
			if status >= 500 {
				s.log.Error("API request failed", "method", r.Method, "path", r.URL.Path, "error", err)
			}
			writeError(rw, err)
		}
		return
	}
	writeJSON(rw, http.StatusNotFound, errorResponse{Message: "page not found"})
}

// compareVersions compares "major.minor" API versions numerically; unparsable parts count as 0.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// responseWriter records whether (and with which status) the response started, and passes
// Flush through for streaming endpoints.
type responseWriter struct {
	http.ResponseWriter
	wroteHeader bool
	status      int
}

func (w *responseWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.wroteHeader = true
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *responseWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// hijacked records that the handler took over the connection and answered with code itself, so
// that errors after that are not written as HTTP responses.
func (w *responseWriter) hijacked(code int) {
	w.wroteHeader = true
	w.status = code
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *responseWriter) statusCode() int {
	if !w.wroteHeader {
		return http.StatusOK
	}
	return w.status
}

func (s *server) notImplemented(what string) handlerFunc {
	return func(context.Context, http.ResponseWriter, *http.Request, map[string]string) error {
		return notImplemented(errors.New(what + " is not implemented in berth yet"))
	}
}
