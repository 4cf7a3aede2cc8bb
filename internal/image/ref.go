package image

import (
	"bytes"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"go.etcd.io/bbolt"
)

// parsedRef is a user-supplied image reference: either a name (tagged, or name@digest), or an
// image ID given as "sha256:<64 hex>" / "<64 hex>". raw keeps the input for short-ID lookups.
type parsedRef struct {
	raw   string
	named reference.Named // nil when the input is an ID
	id    digest.Digest   // set when the input is a full ID
	// byName is set by resolve when the image was found through its name (not an ID).
	byName bool
}

// parseRef parses s as Docker does (reference.ParseAnyReference): names are normalised
// (busybox -> docker.io/library/busybox:latest); 64 hex characters are an ID.
func parseRef(s string) (parsedRef, error) {
	if s == "" {
		return parsedRef{}, errInvalid("invalid reference format: empty reference")
	}
	r, err := reference.ParseAnyReference(s)
	if err != nil {
		return parsedRef{}, errInvalid("%s", err.Error())
	}
	if n, ok := r.(reference.Named); ok {
		if _, canonical := n.(reference.Canonical); !canonical {
			n = reference.TagNameOnly(n)
		}
		return parsedRef{raw: s, named: n}, nil
	}
	if d, ok := r.(reference.Digested); ok {
		return parsedRef{raw: s, id: d.Digest()}, nil
	}
	return parsedRef{}, errInvalid("invalid reference format: %s", s)
}

// String is the form Docker uses in "No such image" messages.
func (p parsedRef) String() string {
	if p.named != nil {
		return reference.FamiliarString(p.named)
	}
	return p.id.String()
}

func noSuchImage(p parsedRef) error {
	return errNotFound("No such image: %s", p.String())
}

// resolve finds the image a reference names: by name first, then as a unique ID prefix.
func resolve(tx *bbolt.Tx, s string) (*imageRecord, parsedRef, error) {
	p, err := parseRef(s)
	if err != nil {
		return nil, p, err
	}
	if p.named == nil {
		rec, err := getImage(tx, p.id)
		if err != nil {
			return nil, p, err
		}
		if rec == nil {
			return nil, p, noSuchImage(p)
		}
		return rec, p, nil
	}
	ref, err := getRef(tx, p.named.String())
	if err != nil {
		return nil, p, err
	}
	if ref != nil {
		rec, err := getImage(tx, ref.ID)
		if err != nil {
			return nil, p, err
		}
		if rec != nil {
			p.byName = true
			return rec, p, nil
		}
	}
	if id, ok := searchID(tx, s); ok {
		rec, err := getImage(tx, id)
		if err != nil || rec != nil {
			return rec, p, err
		}
	}
	return nil, p, noSuchImage(p)
}

// isHex reports whether s is non-empty lowercase hex.
func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// searchID finds the one image whose ID starts with prefix (with or without "sha256:").
// Like Docker's truncindex, any non-empty prefix works as long as it is unambiguous.
func searchID(tx *bbolt.Tx, prefix string) (digest.Digest, bool) {
	prefix = strings.TrimPrefix(prefix, "sha256:")
	if !isHex(prefix) || len(prefix) > 64 {
		return "", false
	}
	full := []byte("sha256:" + prefix)
	c := tx.Bucket(bucketImages).Cursor()
	k, _ := c.Seek(full)
	if k == nil || !bytes.HasPrefix(k, full) {
		return "", false
	}
	found := digest.Digest(k)
	if k2, _ := c.Next(); k2 != nil && bytes.HasPrefix(k2, full) {
		return "", false // ambiguous
	}
	return found, true
}

// isIDPrefix reports whether ref was given as (a prefix of) the image ID rather than a name,
// as Docker's isImageIDPrefix.
func isIDPrefix(id digest.Digest, ref string) bool {
	if strings.HasPrefix(id.String(), ref) {
		return true
	}
	return strings.HasPrefix(id.Encoded(), ref)
}

// shortID is Docker's 12-character ID form.
func shortID(id digest.Digest) string {
	e := id.Encoded()
	if len(e) > 12 {
		e = e[:12]
	}
	return e
}
