package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/moby/moby/api/types/registry"
)

// RegistryBackend is what pull, push and login need from the daemon. auth carries the client's
// credentials for the registry (anonymous when the client sent none).
type RegistryBackend interface {
	// Pull downloads ref (normalised as Docker does) for platform (os[/arch[/variant]], empty
	// for the daemon's) and returns the image ID. A ref with neither tag nor digest pulls
	// every tag of the repository (`docker pull --all-tags`).
	Pull(ctx context.Context, ref, platform string, auth authn.Authenticator, progress Progress) (string, error)
	// Push uploads the stored image ref; a ref without tag pushes every local tag of the
	// repository (`docker push --all-tags`).
	Push(ctx context.Context, ref string, auth authn.Authenticator, progress Progress) error
	// Login checks credentials against a registry (empty server: Docker Hub).
	Login(ctx context.Context, server string, auth authn.Authenticator) (string, error)
}

func (s *server) registry() (RegistryBackend, error) {
	if s.cfg.Registry != nil {
		return s.cfg.Registry, nil
	}
	if rb, ok := s.cfg.Images.(RegistryBackend); ok {
		return rb, nil
	}
	return nil, notImplemented(errors.New("registry access is not available"))
}

// decodeAuthHeader decodes X-Registry-Auth: base64url (padded or not; some clients send
// standard base64) JSON of an AuthConfig.
func decodeAuthHeader(h string) (registry.AuthConfig, error) {
	var ac registry.AuthConfig
	h = strings.TrimSpace(h)
	if h == "" {
		return ac, nil
	}
	var b []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.RawURLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		if b, err = enc.DecodeString(h); err == nil {
			break
		}
	}
	if err != nil {
		return ac, invalidArgument(fmt.Errorf("invalid %s header: %w", registry.AuthHeader, err))
	}
	if len(strings.TrimSpace(string(b))) == 0 || string(b) == "{}" || string(b) == "null" {
		return ac, nil
	}
	if err := json.Unmarshal(b, &ac); err != nil {
		return ac, invalidArgument(fmt.Errorf("invalid %s header: %w", registry.AuthHeader, err))
	}
	return ac, nil
}

func authenticator(ac registry.AuthConfig) authn.Authenticator {
	if ac.Username == "" && ac.Password == "" && ac.Auth == "" && ac.IdentityToken == "" && ac.RegistryToken == "" {
		return authn.Anonymous
	}
	return authn.FromConfig(authn.AuthConfig{
		Username:      ac.Username,
		Password:      ac.Password,
		Auth:          ac.Auth,
		IdentityToken: ac.IdentityToken,
		RegistryToken: ac.RegistryToken,
	})
}

// pullReference combines fromImage and tag as dockerd does: tag may be a tag or a digest.
// When both lack a tag the result is the bare repository, which pulls all its tags: the
// docker CLI always sends tag (latest by default) except for --all-tags.
func pullReference(fromImage, tag string) (string, error) {
	if tag == "" {
		return fromImage, nil
	}
	n, err := reference.ParseNormalizedNamed(fromImage)
	if err != nil {
		return "", invalidArgument(fmt.Errorf("invalid reference format: %w", err))
	}
	if _, ok := n.(reference.Digested); ok {
		return fromImage, nil
	}
	if _, ok := n.(reference.Tagged); ok {
		return fromImage, nil
	}
	sep := ":"
	if strings.Contains(tag, ":") {
		sep = "@" // a digest
	}
	ref := reference.FamiliarName(n) + sep + tag
	if _, err := reference.ParseNormalizedNamed(ref); err != nil {
		return "", invalidArgument(fmt.Errorf("invalid reference format: %s: %w", ref, err))
	}
	return ref, nil
}

// imagePull is POST /images/create?fromImage=.
func (s *server) imagePull(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	rb, err := s.registry()
	if err != nil {
		return err
	}
	ref, err := pullReference(r.Form.Get("fromImage"), r.Form.Get("tag"))
	if err != nil {
		return err
	}
	ac, err := decodeAuthHeader(r.Header.Get(registry.AuthHeader))
	if err != nil {
		return err
	}
	js := newJSONStream(w)
	if _, err := rb.Pull(ctx, ref, r.Form.Get("platform"), authenticator(ac), js.progress); err != nil {
		return js.fail(err)
	}
	return nil
}

// imagePush is POST /images/{name}/push?tag=. An empty tag pushes all local tags of the
// repository, as dockerd does (`docker push --all-tags`).
func (s *server) imagePush(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	rb, err := s.registry()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	ref := vars["name"]
	if tag := r.Form.Get("tag"); tag != "" {
		n, err := reference.ParseNormalizedNamed(ref)
		if err != nil {
			return invalidArgument(fmt.Errorf("invalid reference format: %w", err))
		}
		t, err := reference.WithTag(reference.TrimNamed(n), tag)
		if err != nil {
			return invalidArgument(fmt.Errorf("invalid tag %q: %w", tag, err))
		}
		ref = t.String()
	}
	ac, err := decodeAuthHeader(r.Header.Get(registry.AuthHeader))
	if err != nil {
		return err
	}
	js := newJSONStream(w)
	if err := rb.Push(ctx, ref, authenticator(ac), js.progress); err != nil {
		return js.fail(err)
	}
	return nil
}

// auth is POST /auth: it checks credentials against the registry.
func (s *server) auth(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	rb, err := s.registry()
	if err != nil {
		return err
	}
	var ac registry.AuthConfig
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&ac); err != nil {
		return invalidArgument(fmt.Errorf("invalid authentication request: %w", err))
	}
	if _, err := rb.Login(ctx, ac.ServerAddress, authenticator(ac)); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, registry.AuthResponse{Status: "Login Succeeded"})
	return nil
}
