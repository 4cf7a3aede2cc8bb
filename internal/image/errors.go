package image

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// classErr keeps an error's message exactly as written (Docker clients match on wording such as
// "No such image: foo:latest") while classifying it for the API's status code mapping.
type classErr struct {
	err   error
	class error
}

func (e *classErr) Error() string   { return e.err.Error() }
func (e *classErr) Unwrap() []error { return []error{e.err, e.class} }

func classify(class error, format string, args ...any) error {
	return &classErr{err: fmt.Errorf(format, args...), class: class}
}

func errNotFound(format string, args ...any) error {
	return classify(errdefs.ErrNotFound, format, args...)
}

func errInvalid(format string, args ...any) error {
	return classify(errdefs.ErrInvalidArgument, format, args...)
}

func errConflict(format string, args ...any) error {
	return classify(errdefs.ErrConflict, format, args...)
}
