package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/containerd/errdefs"
)

// errorResponse is Docker's error body.
type errorResponse struct {
	Message string `json:"message"`
}

// classified keeps an error's message as it is while classifying it with an errdefs class.
type classified struct {
	err   error
	class error
}

func (e classified) Error() string        { return e.err.Error() }
func (e classified) Unwrap() error        { return e.err }
func (e classified) Is(target error) bool { return errors.Is(e.class, target) }

func invalidArgument(err error) error { return classified{err, errdefs.ErrInvalidArgument} }
func notImplemented(err error) error  { return classified{err, errdefs.ErrNotImplemented} }

// statusFromError maps errdefs classes onto HTTP status codes as dockerd's httpstatus.FromError
// does; FailedPrecondition and OutOfRange are 400 and AlreadyExists 409 as in its gRPC mapping.
func statusFromError(err error) int {
	switch {
	case errdefs.IsNotFound(err):
		return http.StatusNotFound
	case errdefs.IsInvalidArgument(err), errdefs.IsFailedPrecondition(err), errdefs.IsOutOfRange(err):
		return http.StatusBadRequest
	case errdefs.IsConflict(err), errdefs.IsAlreadyExists(err):
		return http.StatusConflict
	case errdefs.IsUnauthorized(err):
		return http.StatusUnauthorized
	case errdefs.IsUnavailable(err):
		return http.StatusServiceUnavailable
	case errdefs.IsPermissionDenied(err):
		return http.StatusForbidden
	case errdefs.IsNotModified(err):
		return http.StatusNotModified
	case errdefs.IsNotImplemented(err):
		return http.StatusNotImplemented
	default:
		return http.StatusInternalServerError
	}
}

func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, statusFromError(err), errorResponse{Message: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
