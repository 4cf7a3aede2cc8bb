// Package registry is an OCI distribution-spec v1.1 registry server (`berth registry serve`):
// pull, push (monolithic, chunked and streamed uploads, cross-repository mounts), content
// discovery (tag listing, the referrers API) and content management (deleting tags,
// manifests and blobs), with optional HTTP basic authentication and TLS, plus an offline
// garbage collector.
//
// Content lives in a content-addressed store of its own (blobs/<alg>/<hex>, written by
// rename after verification) with all metadata in bbolt transactions, so a crash at any
// instant leaves a consistent registry; see store.go for the invariants.
//
// It must not depend on distribution/distribution or other heavy libraries, and must keep
// no package-level state: the berth binary is also the per-container shim, and every
// package's init-time allocations cost memory in every shim. Validators are hand-written
// for the same reason (no package-level regexps).
//
// Threat model: clients control every byte of the request (paths, headers, bodies). Names,
// tags, digests and upload ids are validated before they reach bbolt keys or file names;
// bodies are streamed with size limits (manifests: 4 MiB) and verified against their digest
// before they become visible.
package registry

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config configures a registry server.
type Config struct {
	// Addr is the TCP address to listen on (Run only), e.g. ":5000".
	Addr string
	// Root is the directory holding the registry's content and database.
	Root string
	// TLSCert and TLSKey enable HTTPS; TLSClientCA additionally requires client
	// certificates signed by that CA (mutual TLS).
	TLSCert, TLSKey, TLSClientCA string
	// Htpasswd enables basic authentication against a file of bcrypt entries.
	Htpasswd string
	// NoDelete disables the DELETE endpoints for manifests, tags and blobs (405 UNSUPPORTED).
	NoDelete bool
	// Logger receives access logs (debug) and errors; nil discards.
	Logger *slog.Logger
}

// Server is the registry's http.Handler. Create it with New and release it with Close.
type Server struct {
	store    *store
	auth     *basicAuth // nil: anonymous access
	noDelete bool
	log      *slog.Logger
}

// openLockTimeout bounds the wait for the database lock, which another server (or a
// garbage collection) on the same root holds.
const openLockTimeout = 2 * time.Second

// New opens (or creates) the registry at cfg.Root, cleans up what an earlier crash left and
// returns the server. It fails if another process holds the root.
func New(cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Root == "" {
		return nil, errors.New("registry: no root directory")
	}
	s := &Server{noDelete: cfg.NoDelete, log: log}
	if cfg.Htpasswd != "" {
		a, err := loadHtpasswd(cfg.Htpasswd)
		if err != nil {
			return nil, err
		}
		s.auth = a
	}
	st, err := openStore(cfg.Root, openLockTimeout, log)
	if err != nil {
		return nil, err
	}
	n, err := st.recover(time.Now(), uploadTTL)
	if err != nil {
		_ = st.close()
		return nil, err
	}
	if n > 0 {
		log.Info("registry: removed stale upload sessions", "count", n)
	}
	s.store = st
	return s, nil
}

// Close releases the registry root. Requests must have finished.
func (s *Server) Close() error { return s.store.close() }

// ServeHTTP implements http.Handler for the /v2/ API.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w := &statusWriter{ResponseWriter: rw}
	user := ""
	defer func() {
		if s.log.Enabled(r.Context(), slog.LevelDebug) {
			s.log.LogAttrs(r.Context(), slog.LevelDebug, "registry request",
				slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int("status", w.status()), slog.Int64("bytes", w.written),
				slog.Duration("duration", time.Since(start)), slog.String("remote", r.RemoteAddr),
				slog.String("user", user))
		}
	}()
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if s.auth != nil {
		u, ok := s.auth.check(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="berth-registry"`)
			msg := "authentication required"
			if _, _, sent := r.BasicAuth(); sent {
				msg = "invalid username or password"
			}
			writeError(w, r, codeUnauthorized, msg, nil)
			return
		}
		user = u
	}
	rt, ok := parseRoute(r.URL.Path)
	if !ok {
		writeErrors(w, r, http.StatusNotFound, apiError{Code: codeUnsupported, Message: "unknown endpoint " + r.URL.Path})
		return
	}
	if rt.kind == routeBase {
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		writeJSON(w, r, http.StatusOK, "application/json", []byte("{}"))
		return
	}
	if !validName(rt.name) {
		writeError(w, r, codeNameInvalid, "invalid repository name", map[string]string{"name": rt.name})
		return
	}
	switch rt.kind {
	case routeManifest:
		s.manifest(w, r, rt.name, rt.ref)
	case routeBlob:
		s.blob(w, r, rt.name, rt.ref)
	case routeUploadNew:
		if allow(w, r, http.MethodPost) {
			s.startUpload(w, r, rt.name)
		}
	case routeUpload:
		s.upload(w, r, rt.name, rt.ref)
	case routeTags:
		if allow(w, r, http.MethodGet, http.MethodHead) {
			s.tags(w, r, rt.name)
		}
	case routeReferrers:
		if allow(w, r, http.MethodGet, http.MethodHead) {
			s.referrers(w, r, rt.name, rt.ref)
		}
	}
}

// allow answers 405 unless the request uses one of methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeErrors(w, r, http.StatusMethodNotAllowed, apiError{Code: codeUnsupported, Message: "method " + r.Method + " not allowed here"})
	return false
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// internalError logs err and answers 500.
func (s *Server) internalError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(r.Context().Err(), context.Canceled) {
		s.log.Debug("registry: request cancelled", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		s.log.Error("registry: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeErrors(w, r, http.StatusInternalServerError, apiError{Code: "UNKNOWN", Message: "internal server error"})
}

// ---- manifests ---------------------------------------------------------------------------

func (s *Server) manifest(w http.ResponseWriter, r *http.Request, name, ref string) {
	isDigest := strings.Contains(ref, ":")
	switch {
	case isDigest && !validDigest(ref):
		writeError(w, r, codeDigestInvalid, "invalid or unsupported digest (sha256 and sha512 are supported)", digestDetail{Digest: ref})
		return
	case !isDigest && !validTag(ref) && r.Method != http.MethodPut:
		writeError(w, r, codeManifestUnknown, "invalid tag", map[string]string{"tag": ref})
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.getManifest(w, r, name, ref)
	case http.MethodPut:
		s.putManifest(w, r, name, ref, isDigest)
	case http.MethodDelete:
		if s.noDelete {
			writeError(w, r, codeUnsupported, "deletion is disabled on this registry", nil)
			return
		}
		var err error
		if isDigest {
			err = s.store.deleteManifest(name, ref)
		} else {
			err = s.store.deleteTag(name, ref)
		}
		switch {
		case err == nil:
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusAccepted)
		case errors.Is(err, errNameUnknown):
			writeError(w, r, codeNameUnknown, err.Error(), map[string]string{"name": name})
		case errors.Is(err, errManifestUnknown):
			writeError(w, r, codeManifestUnknown, err.Error(), nil)
		default:
			s.internalError(w, r, err)
		}
	default:
		allow(w, r, http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete)
	}
}

func (s *Server) getManifest(w http.ResponseWriter, r *http.Request, name, ref string) {
	dgst, rec, err := s.store.resolveManifest(name, ref)
	if err != nil {
		if errors.Is(err, errManifestUnknown) {
			writeError(w, r, codeManifestUnknown, err.Error(), nil)
			return
		}
		s.internalError(w, r, err)
		return
	}
	f, size, err := s.store.openContent(dgst)
	if err != nil {
		if errors.Is(err, errBlobUnknown) {
			writeError(w, r, codeManifestUnknown, "manifest content is missing", nil)
			return
		}
		s.internalError(w, r, err)
		return
	}
	defer f.Close()
	// The stored manifest is returned as pushed, whatever the Accept header says: the
	// registry never converts manifests, and clients check Content-Type.
	h := w.Header()
	h.Set("Content-Type", rec.MediaType)
	h.Set("Docker-Content-Digest", dgst)
	h.Set("Etag", `"`+dgst+`"`)
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	http.ServeContent(w, r, "", time.Time{}, f)
}

func (s *Server) putManifest(w http.ResponseWriter, r *http.Request, name, ref string, isDigest bool) {
	if !isDigest && !validTag(ref) {
		writeError(w, r, codeManifestInvalid, "invalid tag: must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", map[string]string{"tag": ref})
		return
	}
	tags := []string{}
	if !isDigest {
		tags = append(tags, ref)
	}
	// OCI 1.1+dev: PUT by digest with ?tag= parameters tags the manifest in the same request.
	for _, t := range r.URL.Query()["tag"] {
		if !validTag(t) {
			writeError(w, r, codeManifestInvalid, "invalid tag parameter", map[string]string{"tag": t})
			return
		}
		tags = append(tags, t)
	}
	if r.ContentLength > maxManifestSize {
		writeErrors(w, r, http.StatusRequestEntityTooLarge, apiError{Code: codeManifestInvalid,
			Message: fmt.Sprintf("manifest is larger than the %d byte limit", maxManifestSize)})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxManifestSize+1))
	if err != nil {
		writeError(w, r, codeManifestInvalid, "reading manifest: "+err.Error(), nil)
		return
	}
	if len(body) > maxManifestSize {
		writeErrors(w, r, http.StatusRequestEntityTooLarge, apiError{Code: codeManifestInvalid,
			Message: fmt.Sprintf("manifest is larger than the %d byte limit", maxManifestSize)})
		return
	}
	// The digest of a manifest pushed by digest uses that digest's algorithm; by tag, sha256.
	alg := algSHA256
	if isDigest {
		alg, _, _ = parseDigest(ref)
	}
	dgst := alg + ":" + hexSum(alg, body)
	if isDigest && dgst != ref {
		writeError(w, r, codeDigestInvalid, "manifest content does not match the digest in the URL", digestDetail{Digest: ref})
		return
	}
	pm, err := parseManifest(body, r.Header.Get("Content-Type"))
	if err != nil {
		writeError(w, r, codeManifestInvalid, err.Error(), nil)
		return
	}
	if pm.referrer != nil {
		pm.referrer.Digest = dgst
		pm.referrer.Size = int64(len(body))
	}
	err = s.store.putManifest(manifestPut{name: name, digest: dgst, body: body, rec: pm.rec, tags: tags, referrer: pm.referrer})
	var missing missingError
	switch {
	case errors.As(err, &missing):
		errs := make([]apiError, 0, len(missing.digests))
		for _, d := range missing.digests {
			errs = append(errs, apiError{Code: codeManifestBlobUnknown, Message: "manifest references a blob or manifest unknown to this repository", Detail: digestDetail{Digest: d}})
		}
		writeErrors(w, r, http.StatusBadRequest, errs...)
		return
	case err != nil:
		s.internalError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/manifests/"+dgst)
	h.Set("Docker-Content-Digest", dgst)
	if pm.rec.Subject != "" {
		h.Set("OCI-Subject", pm.rec.Subject)
	}
	if isDigest {
		for _, t := range tags {
			h.Add("OCI-Tag", t)
		}
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func hexSum(alg string, b []byte) string {
	if alg == algSHA512 {
		sum := sha512.Sum512(b)
		return hex.EncodeToString(sum[:])
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ---- blobs -------------------------------------------------------------------------------

func (s *Server) blob(w http.ResponseWriter, r *http.Request, name, dgst string) {
	if !validDigest(dgst) {
		writeError(w, r, codeDigestInvalid, "invalid or unsupported digest (sha256 and sha512 are supported)", digestDetail{Digest: dgst})
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		f, size, err := s.store.openBlob(name, dgst)
		if err != nil {
			if errors.Is(err, errBlobUnknown) {
				writeError(w, r, codeBlobUnknown, err.Error(), digestDetail{Digest: dgst})
				return
			}
			s.internalError(w, r, err)
			return
		}
		defer f.Close()
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Docker-Content-Digest", dgst)
		h.Set("Etag", `"`+dgst+`"`)
		h.Set("Cache-Control", "max-age=31536000")
		h.Set("Accept-Ranges", "bytes")
		if r.Method == http.MethodHead && r.Header.Get("Range") == "" {
			h.Set("Content-Length", strconv.FormatInt(size, 10))
			w.WriteHeader(http.StatusOK)
			return
		}
		// ServeContent handles Range (206, 416), conditional requests and HEAD, and hands
		// the *os.File to sendfile(2) on plain HTTP connections.
		http.ServeContent(w, r, "", time.Time{}, f)
	case http.MethodDelete:
		if s.noDelete {
			writeError(w, r, codeUnsupported, "deletion is disabled on this registry", nil)
			return
		}
		switch err := s.store.unlinkBlob(name, dgst); {
		case err == nil:
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusAccepted)
		case errors.Is(err, errBlobUnknown):
			writeError(w, r, codeBlobUnknown, err.Error(), digestDetail{Digest: dgst})
		default:
			s.internalError(w, r, err)
		}
	default:
		allow(w, r, http.MethodGet, http.MethodHead, http.MethodDelete)
	}
}

// ---- uploads -----------------------------------------------------------------------------

func (s *Server) startUpload(w http.ResponseWriter, r *http.Request, name string) {
	q := r.URL.Query()
	// Cross-repository mount. When the blob cannot be mounted (unknown digest or source)
	// the spec says to fall back to an ordinary upload session (202).
	if mount := q.Get("mount"); mount != "" && validDigest(mount) {
		from := q.Get("from")
		if from == "" || validName(from) {
			_, ok, err := s.store.mountBlob(name, from, mount)
			if err != nil {
				s.internalError(w, r, err)
				return
			}
			if ok {
				blobCreated(w, name, mount)
				return
			}
		}
	}
	if dgst, ok := q["digest"]; ok && len(dgst) > 0 {
		// Single-request monolithic upload.
		if !validDigest(dgst[0]) {
			writeError(w, r, codeDigestInvalid, "invalid or unsupported digest (sha256 and sha512 are supported)", digestDetail{Digest: dgst[0]})
			return
		}
		if _, err := s.store.putBlob(r.Context(), name, dgst[0], r.Body, r.ContentLength); err != nil {
			s.uploadError(w, r, err, name, "")
			return
		}
		blobCreated(w, name, dgst[0])
		return
	}
	id, err := s.store.startUpload(name)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	uploadAccepted(w, http.StatusAccepted, name, id, 0)
}

// blobCreated is the 201 answer to a completed upload or mount.
func blobCreated(w http.ResponseWriter, name, dgst string) {
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/blobs/"+dgst)
	h.Set("Docker-Content-Digest", dgst)
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// uploadAccepted answers with the state of an upload session.
func uploadAccepted(w http.ResponseWriter, status int, name, id string, offset int64) {
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/blobs/uploads/"+id)
	h.Set("Range", uploadRange(offset))
	h.Set("Docker-Upload-UUID", id)
	h.Set("Blob-Upload-Session-ID", id)
	if status != http.StatusNoContent {
		h.Set("Content-Length", "0")
	}
	w.WriteHeader(status)
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request, name, id string) {
	if !validSessionID(id) {
		writeError(w, r, codeBlobUploadUnknown, errUploadUnknown.Error(), nil)
		return
	}
	switch r.Method {
	case http.MethodGet:
		off, err := s.store.uploadStatus(name, id)
		if err != nil {
			s.uploadError(w, r, err, name, id)
			return
		}
		uploadAccepted(w, http.StatusNoContent, name, id, off)
	case http.MethodPatch:
		start, length, ok := s.chunkRange(w, r, name, id)
		if !ok {
			return
		}
		off, err := s.store.appendUpload(r.Context(), name, id, r.Body, start, length)
		if err != nil {
			s.uploadError(w, r, err, name, id)
			return
		}
		uploadAccepted(w, http.StatusAccepted, name, id, off)
	case http.MethodPut:
		dgst := r.URL.Query().Get("digest")
		if !validDigest(dgst) {
			writeError(w, r, codeDigestInvalid, "closing an upload needs a digest parameter with a sha256 or sha512 digest", digestDetail{Digest: dgst})
			return
		}
		start, length, ok := s.chunkRange(w, r, name, id)
		if !ok {
			return
		}
		var body io.Reader
		if r.ContentLength != 0 || start >= 0 {
			body = r.Body
		}
		if _, err := s.store.finishUpload(r.Context(), name, id, dgst, body, start, length); err != nil {
			s.uploadError(w, r, err, name, id)
			return
		}
		blobCreated(w, name, dgst)
	case http.MethodDelete:
		if err := s.store.cancelUpload(name, id); err != nil {
			s.uploadError(w, r, err, name, id)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		allow(w, r, http.MethodGet, http.MethodPatch, http.MethodPut, http.MethodDelete)
	}
}

// rangeNotSatisfiable answers 416 with the session's current range, so the client can resume.
func (s *Server) rangeNotSatisfiable(w http.ResponseWriter, r *http.Request, name, id string) {
	off, err := s.store.uploadStatus(name, id)
	if err != nil {
		s.uploadError(w, r, err, name, id)
		return
	}
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/blobs/uploads/"+id)
	h.Set("Range", uploadRange(off))
	h.Set("Docker-Upload-UUID", id)
	h.Set("Blob-Upload-Session-ID", id)
	writeErrors(w, r, http.StatusRequestedRangeNotSatisfiable, apiError{Code: codeBlobUploadInvalid,
		Message: fmt.Sprintf("chunks must be sent in order: the upload continues at byte %d", off)})
}

// uploadError maps a store error of an upload to its response.
func (s *Server) uploadError(w http.ResponseWriter, r *http.Request, err error, name, id string) {
	var re rangeError
	switch {
	case errors.As(err, &re):
		s.rangeNotSatisfiable(w, r, name, id)
	case errors.Is(err, errUploadUnknown):
		writeError(w, r, codeBlobUploadUnknown, err.Error(), nil)
	case errors.Is(err, errDigestMismatch):
		writeError(w, r, codeDigestInvalid, err.Error(), nil)
	case errors.Is(err, errSizeMismatch):
		writeError(w, r, codeSizeInvalid, err.Error(), nil)
	case errors.As(err, new(bodyError)):
		s.log.Debug("registry: upload interrupted", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, r, codeBlobUploadInvalid, err.Error(), nil)
	default:
		s.internalError(w, r, err)
	}
}

// ---- content discovery -------------------------------------------------------------------

// maxTagsPage caps one page of the tag list when the client asks for more.
const maxTagsPage = 10000

func (s *Server) tags(w http.ResponseWriter, r *http.Request, name string) {
	q := r.URL.Query()
	n := -1
	if v := q.Get("n"); v != "" {
		i, err := strconv.Atoi(v)
		if err != nil || i < 0 {
			writeErrors(w, r, http.StatusBadRequest, apiError{Code: codeUnsupported, Message: "n must be a non-negative integer"})
			return
		}
		n = min(i, maxTagsPage)
	}
	last := q.Get("last")
	tags, more, err := s.store.listTags(name, last, n)
	if err != nil {
		if errors.Is(err, errNameUnknown) {
			writeError(w, r, codeNameUnknown, err.Error(), map[string]string{"name": name})
			return
		}
		s.internalError(w, r, err)
		return
	}
	if more && n > 0 {
		next := url.Values{}
		next.Set("n", strconv.Itoa(n))
		next.Set("last", tags[len(tags)-1])
		w.Header().Set("Link", "</v2/"+name+"/tags/list?"+next.Encode()+`>; rel="next"`)
	}
	body, err := json.Marshal(struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{name, tags})
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, "application/json", body)
}

func (s *Server) referrers(w http.ResponseWriter, r *http.Request, name, dgst string) {
	if !validDigest(dgst) {
		writeError(w, r, codeDigestInvalid, "invalid or unsupported digest (sha256 and sha512 are supported)", digestDetail{Digest: dgst})
		return
	}
	artifactType := r.URL.Query().Get("artifactType")
	refs, err := s.store.referrers(name, dgst, artifactType)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if artifactType != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	body, err := json.Marshal(struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []descriptor `json:"manifests"`
	}{2, mediaTypeOCIIndex, refs})
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, mediaTypeOCIIndex, body)
}

// ---- response writer -----------------------------------------------------------------------

// statusWriter records the status and size of a response for the access log. It forwards
// ReadFrom so that http.ServeContent still reaches sendfile(2), and Unwrap for
// http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	code    int
	written int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	return n, err
}

func (w *statusWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, src)
	}
	w.written += n
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// chunkRange reads a chunk's Content-Range: start and length, or -1 and -1 without one. A
// malformed range has been answered (416) when ok is false.
func (s *Server) chunkRange(w http.ResponseWriter, r *http.Request, name, id string) (start, length int64, ok bool) {
	cr := r.Header.Get("Content-Range")
	if cr == "" {
		return -1, -1, true
	}
	a, b, ok := parseContentRange(cr)
	if !ok {
		s.rangeNotSatisfiable(w, r, name, id)
		return 0, 0, false
	}
	return a, b - a + 1, true
}
