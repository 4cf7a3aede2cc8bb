package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Registry access tuning. Docker downloads three layers at a time and uploads five.
const (
	pullJobs     = 3
	pushJobs     = 5
	blobAttempts = 3
)

// defaultRetryBase is the first back-off between attempts of one blob (doubled each time).
const defaultRetryBase = time.Second

// userAgent is what berth says to registries.
const userAgent = "berth"

// normalizeRef parses an image reference as Docker does (busybox -> docker.io/library/busybox:latest)
// and returns it with the registry reference of go-containerregistry at the image's own
// registry (Docker Hub's endpoint for docker.io; mirrors aside). Plain-HTTP registries are
// those on loopback addresses or in the daemon's insecure list.
func (s *Service) normalizeRef(ref string) (reference.Named, name.Reference, error) {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, nil, errInvalid("invalid reference format: %v", err)
	}
	if n, err = pullName(n); err != nil {
		return nil, nil, err
	}
	reg, err := s.registryFor(reference.Domain(n))
	if err != nil {
		return nil, nil, err
	}
	repo := reg.Repo(reference.Path(n))
	if d, ok := n.(reference.Digested); ok {
		return n, repo.Digest(d.Digest().String()), nil
	}
	return n, repo.Tag(n.(reference.Tagged).Tag()), nil
}

// insecureRegistry reports whether a registry is spoken to over plain HTTP: localhost and
// 127.0.0.0/8 (as Docker), and the daemon's --insecure-registry entries (host[:port] or CIDR).
func (s *Service) insecureRegistry(domain string) bool {
	host := domain
	if h, _, err := net.SplitHostPort(domain); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	if ip != nil && ip.IsLoopback() {
		return true
	}
	for _, e := range s.insecure {
		if e == domain || e == host {
			return true
		}
		if _, cidr, err := net.ParseCIDR(e); err == nil && ip != nil && cidr.Contains(ip) {
			return true
		}
	}
	return false
}

func (s *Service) remoteOptions(ctx context.Context, auth authn.Authenticator) []remote.Option {
	if auth == nil {
		auth = authn.Anonymous
	}
	base := s.retryBase
	if base <= 0 {
		base = defaultRetryBase
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(auth),
		remote.WithUserAgent(userAgent),
		remote.WithRetryBackoff(remote.Backoff{Duration: base, Factor: 2, Jitter: 0.1, Steps: blobAttempts}),
	}
}

// registryError turns a registry failure into a classified error with Docker's wording.
func registryError(op string, n reference.Named, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			if op == "pull" {
				return classify(errdefs.ErrUnauthenticated, "pull access denied for %s, repository does not exist or may require 'docker login': %v", reference.FamiliarName(n), err)
			}
			return classify(errdefs.ErrUnauthenticated, "%s %s: unauthorized: authentication required: %v", op, reference.FamiliarString(n), err)
		case http.StatusNotFound:
			return errNotFound("%s %s: manifest unknown: %v", op, reference.FamiliarString(n), err)
		}
		if te.Temporary() {
			return classify(errdefs.ErrUnavailable, "%s %s: %v", op, reference.FamiliarString(n), err)
		}
	}
	return fmt.Errorf("%s %s: %w", op, reference.FamiliarString(n), err)
}

// retryable reports whether a failed blob transfer is worth another attempt: network failures
// and server errors are; refusals (4xx) and cancellation are not.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode >= 500 || te.StatusCode == http.StatusTooManyRequests
	}
	return true
}

// withRetries runs fn up to blobAttempts times with doubling back-off.
func (s *Service) withRetries(ctx context.Context, fn func() error, onRetry func(wait time.Duration, err error)) error {
	wait := s.retryBase
	if wait <= 0 {
		wait = defaultRetryBase
	}
	var err error
	for attempt := 1; ; attempt++ {
		if err = fn(); err == nil {
			return nil
		}
		if attempt >= blobAttempts || !retryable(ctx, err) {
			return err
		}
		if onRetry != nil {
			onRetry(wait, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait *= 2
	}
}

// Login checks credentials against a registry (server as given to `docker login`; empty is
// Docker Hub) by authenticating and fetching /v2/. It returns the registry's host name.
func (s *Service) Login(ctx context.Context, server string, auth authn.Authenticator) (string, error) {
	host := registryHost(server)
	domain := host
	if host == name.DefaultRegistry {
		domain = hubDomain
	}
	reg, err := s.registryFor(domain)
	if err != nil {
		return "", errInvalid("invalid registry %q: %v", server, err)
	}
	if auth == nil {
		auth = authn.Anonymous
	}
	endpoint := reg.Scheme() + "://" + reg.RegistryStr() + "/v2/"
	rt, err := transport.NewWithContext(ctx, reg, auth, http.DefaultTransport, nil)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
			return "", classify(errdefs.ErrUnauthenticated, "login attempt to %s failed with status: %d %s", endpoint, te.StatusCode, http.StatusText(te.StatusCode))
		}
		return "", classify(errdefs.ErrUnavailable, "login to %s: %v", endpoint, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return "", classify(errdefs.ErrUnavailable, "login to %s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	switch {
	case resp.StatusCode == http.StatusOK:
		return reg.RegistryStr(), nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", classify(errdefs.ErrUnauthenticated, "login attempt to %s failed with status: %s", endpoint, resp.Status)
	default:
		return "", classify(errdefs.ErrUnavailable, "login attempt to %s failed with status: %s", endpoint, resp.Status)
	}
}

// registryHost reduces what `docker login` accepts (a host, a URL, Docker Hub's legacy
// https://index.docker.io/v1/) to a registry host.
func registryHost(server string) string {
	h := strings.TrimSpace(server)
	h = strings.TrimPrefix(h, "https://")
	h = strings.TrimPrefix(h, "http://")
	if i := strings.IndexByte(h, '/'); i >= 0 {
		h = h[:i]
	}
	switch h {
	case "", "docker.io", "index.docker.io", "registry-1.docker.io":
		return name.DefaultRegistry
	}
	return h
}
