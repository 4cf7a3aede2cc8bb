package registry

import (
	"strconv"
	"strings"
)

// The validators below are hand-written state machines rather than regexps: they allocate
// nothing, cost nothing at package init (the binary is also the per-container shim) and are
// several times faster than the equivalent regexp on the request path.

// maxNameLength bounds a repository name. The spec notes that clients limit
// "host[:port]/<name>" to 255 characters; distribution enforces 255 on the name itself.
const maxNameLength = 255

// validName reports whether name matches the distribution-spec repository name grammar:
//
//	[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
func validName(name string) bool {
	if name == "" || len(name) > maxNameLength {
		return false
	}
	for comp := range strings.SplitSeq(name, "/") {
		if !validComponent(comp) {
			return false
		}
	}
	return true
}

// validComponent checks one path component: alphanumeric runs joined by ".", "_", "__" or
// one or more "-".
func validComponent(c string) bool {
	if c == "" || !isLowerAlnum(c[0]) || !isLowerAlnum(c[len(c)-1]) {
		return false
	}
	for i := 0; i < len(c); {
		if isLowerAlnum(c[i]) {
			i++
			continue
		}
		// A separator run, which must be followed by an alphanumeric (guaranteed for the last
		// run because the component ends in one).
		switch c[i] {
		case '.':
			i++
		case '_':
			i++
			if i < len(c) && c[i] == '_' {
				i++
			}
		case '-':
			for i < len(c) && c[i] == '-' {
				i++
			}
		default:
			return false
		}
		if !isLowerAlnum(c[i]) {
			return false
		}
	}
	return true
}

func isLowerAlnum(b byte) bool { return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' }

func isAlnum(b byte) bool { return isLowerAlnum(b) || b >= 'A' && b <= 'Z' }

// validTag reports whether tag matches [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func validTag(tag string) bool {
	if tag == "" || len(tag) > 128 {
		return false
	}
	if !isAlnum(tag[0]) && tag[0] != '_' {
		return false
	}
	for i := 1; i < len(tag); i++ {
		c := tag[i]
		if !isAlnum(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// Supported digest algorithms. Only these two are accepted: anything else cannot be verified.
const (
	algSHA256 = "sha256"
	algSHA512 = "sha512"
)

// parseDigest splits "algorithm:hex" and checks it is a digest this registry can verify:
// sha256 with 64 or sha512 with 128 lowercase hex digits. The returned hex is safe to use as
// a file name.
func parseDigest(s string) (alg, hex string, ok bool) {
	alg, hex, found := strings.Cut(s, ":")
	if !found {
		return "", "", false
	}
	var want int
	switch alg {
	case algSHA256:
		want = 64
	case algSHA512:
		want = 128
	default:
		return "", "", false
	}
	if len(hex) != want {
		return "", "", false
	}
	for i := 0; i < len(hex); i++ {
		c := hex[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", "", false
		}
	}
	return alg, hex, true
}

func validDigest(s string) bool {
	_, _, ok := parseDigest(s)
	return ok
}

// routeKind is the endpoint a /v2/ path addresses.
type routeKind int

const (
	routeNone      routeKind = iota
	routeBase                // /v2/
	routeTags                // /v2/<name>/tags/list
	routeManifest            // /v2/<name>/manifests/<reference>
	routeBlob                // /v2/<name>/blobs/<digest>
	routeUploadNew           // /v2/<name>/blobs/uploads/
	routeUpload              // /v2/<name>/blobs/uploads/<session>
	routeReferrers           // /v2/<name>/referrers/<digest>
)

// route is a parsed request path. name and ref are not validated here.
type route struct {
	kind routeKind
	name string
	ref  string // tag or digest, blob digest, upload session id or subject digest
}

// parseRoute parses the path of a request under /v2/. It reads the path from the right: the
// last one or two segments select the endpoint and everything before them is the name, so a
// repository may itself contain "blobs", "manifests" or "uploads" components
// (/v2/a/manifests/b/manifests/latest is the manifest "latest" of repository "a/manifests/b").
func parseRoute(path string) (route, bool) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		if path == "/v2" {
			return route{kind: routeBase}, true
		}
		return route{}, false
	}
	if rest == "" {
		return route{kind: routeBase}, true
	}
	// last segment and what precedes it
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 {
		return route{}, false
	}
	head, last := rest[:i], rest[i+1:]
	j := strings.LastIndexByte(head, '/')
	if j <= 0 {
		return route{}, false
	}
	name, verb := head[:j], head[j+1:]
	switch verb {
	case "manifests":
		if last == "" {
			return route{}, false
		}
		return route{kind: routeManifest, name: name, ref: last}, true
	case "blobs":
		if last == "uploads" { // POST /v2/<name>/blobs/uploads without the trailing slash
			return route{kind: routeUploadNew, name: name}, true
		}
		if last == "" {
			return route{}, false
		}
		return route{kind: routeBlob, name: name, ref: last}, true
	case "referrers":
		if last == "" {
			return route{}, false
		}
		return route{kind: routeReferrers, name: name, ref: last}, true
	case "tags":
		if last != "list" {
			return route{}, false
		}
		return route{kind: routeTags, name: name}, true
	case "uploads":
		k := strings.LastIndexByte(name, '/')
		if k <= 0 || name[k+1:] != "blobs" {
			return route{}, false
		}
		if last == "" {
			return route{kind: routeUploadNew, name: name[:k]}, true
		}
		return route{kind: routeUpload, name: name[:k], ref: last}, true
	}
	return route{}, false
}

// parseContentRange parses the Content-Range of a chunk upload. The spec's form is
// "<start>-<end>" (inclusive); the RFC 9110 forms "bytes <start>-<end>[/<total>]" and the
// "bytes=" variant some clients send are accepted too.
func parseContentRange(s string) (start, end int64, ok bool) {
	s = strings.TrimSpace(s)
	if v, found := strings.CutPrefix(s, "bytes"); found {
		s = strings.TrimLeft(v, " =")
	}
	if k := strings.IndexByte(s, '/'); k >= 0 {
		s = s[:k]
	}
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start-1 || !allDigits(a) || !allDigits(b) {
		return 0, 0, false
	}
	return start, end, true
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

// uploadRange is the value of the Range header of upload responses: "0-<last byte>", which
// is "0-0" for an empty upload as distribution has always reported it.
func uploadRange(offset int64) string {
	if offset <= 0 {
		return "0-0"
	}
	return "0-" + strconv.FormatInt(offset-1, 10)
}

// validSessionID reports whether id could be one of ours (a UUID); it keeps arbitrary client
// input out of bbolt keys and file names.
func validSessionID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}
