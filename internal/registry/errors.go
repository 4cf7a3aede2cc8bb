package registry

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Error codes of the distribution spec ("Error Codes" table).
const (
	codeBlobUnknown         = "BLOB_UNKNOWN"
	codeBlobUploadInvalid   = "BLOB_UPLOAD_INVALID"
	codeBlobUploadUnknown   = "BLOB_UPLOAD_UNKNOWN"
	codeDigestInvalid       = "DIGEST_INVALID"
	codeManifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN"
	codeManifestInvalid     = "MANIFEST_INVALID"
	codeManifestUnknown     = "MANIFEST_UNKNOWN"
	codeNameInvalid         = "NAME_INVALID"
	codeNameUnknown         = "NAME_UNKNOWN"
	codeSizeInvalid         = "SIZE_INVALID"
	codeUnauthorized        = "UNAUTHORIZED"
	codeDenied              = "DENIED"
	codeUnsupported         = "UNSUPPORTED"
	codeTooManyRequests     = "TOOMANYREQUESTS"
)

// apiError is one entry of the spec's error body.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// errorBody is the JSON body of every 4xx/5xx response: {"errors":[...]}.
type errorBody struct {
	Errors []apiError `json:"errors"`
}

// defaultStatus is the HTTP status the spec pairs with each code.
func defaultStatus(code string) int {
	switch code {
	case codeBlobUnknown, codeBlobUploadUnknown, codeManifestUnknown, codeNameUnknown:
		return http.StatusNotFound
	case codeUnauthorized:
		return http.StatusUnauthorized
	case codeDenied:
		return http.StatusForbidden
	case codeUnsupported:
		return http.StatusMethodNotAllowed
	case codeTooManyRequests:
		return http.StatusTooManyRequests
	default:
		return http.StatusBadRequest
	}
}

// writeErrors writes the error body with the given status. HEAD responses carry no body.
func writeErrors(w http.ResponseWriter, r *http.Request, status int, errs ...apiError) {
	body, err := json.Marshal(errorBody{Errors: errs})
	if err != nil { // cannot happen for these types; keep the status regardless
		body = []byte(`{"errors":[]}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Del("Docker-Content-Digest")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// writeError writes a single error with the status the spec pairs with its code.
func writeError(w http.ResponseWriter, r *http.Request, code, message string, detail any) {
	writeErrors(w, r, defaultStatus(code), apiError{Code: code, Message: message, Detail: detail})
}

// digestDetail is the detail of errors about one digest, as the spec's examples show it.
type digestDetail struct {
	Digest string `json:"digest"`
}
