package image

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/moby/api/types/registry"
)

// HubConfig says how Docker Hub (docker.io) images are reached.
type HubConfig struct {
	// Mirrors are dockerd's --registry-mirror URLs (http:// for plain HTTP or https://, a host
	// with an optional port, no path). Pulls of docker.io images try each in order, then Docker
	// Hub itself; pushes and logins never use them.
	Mirrors []string
	// Endpoint replaces Docker Hub's own registry, as a URL like the mirrors'. Empty is the real
	// one; tests set it (the daemon's hidden --registry-hub flag) because they have no internet.
	Endpoint string
}

// hubDomain is the domain distribution/reference gives Docker Hub images.
const hubDomain = "docker.io"

// endpoint is one registry to reach a repository at.
type endpoint struct {
	reg    name.Registry
	url    string // as configured (mirrors), for logs
	mirror bool
}

// parseRegistryURL validates a --registry-mirror (or hub endpoint) URL as dockerd does and
// returns it normalised with a trailing slash, as `docker info` shows mirrors.
func parseRegistryURL(raw string) (*url.URL, string, error) {
	if scheme, _, ok := strings.Cut(raw, "://"); !ok || scheme == "" {
		return nil, "", errInvalid("invalid mirror: no scheme specified for %q: must use either 'https://' or 'http://'", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", errInvalid("invalid mirror: %q is not a valid URI: %v", raw, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, "", errInvalid("invalid mirror: unsupported scheme %q in %q: must use either 'https://' or 'http://'", u.Scheme, raw)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, "", errInvalid("invalid mirror: query or fragment at end of the URI %q", raw)
	case u.User != nil:
		return nil, "", errInvalid("invalid mirror: username/password not allowed in URI %q", u.Redacted())
	case u.Host == "":
		return nil, "", errInvalid("invalid mirror: no host in %q", raw)
	case u.Path != "" && u.Path != "/":
		// go-containerregistry addresses a registry by host only.
		return nil, "", errInvalid("invalid mirror: a path (%q) is not supported in %q", u.Path, raw)
	}
	return u, strings.TrimSuffix(raw, "/") + "/", nil
}

// newEndpoint is the registry behind a validated mirror or hub URL; http:// and the
// daemon's insecure registries are spoken to over plain HTTP.
func (s *Service) newEndpoint(raw string, mirror bool) (endpoint, error) {
	u, norm, err := parseRegistryURL(raw)
	if err != nil {
		return endpoint{}, err
	}
	var opts []name.Option
	if u.Scheme == "http" || s.insecureRegistry(u.Host) {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(u.Host, append(opts, name.StrictValidation)...)
	if err != nil {
		return endpoint{}, errInvalid("invalid mirror: %q: %v", raw, err)
	}
	return endpoint{reg: reg, url: norm, mirror: mirror}, nil
}

// setHub validates and installs the Docker Hub configuration (New calls it once).
func (s *Service) setHub(cfg HubConfig) error {
	seen := map[string]bool{}
	for _, m := range cfg.Mirrors {
		ep, err := s.newEndpoint(m, true)
		if err != nil {
			return err
		}
		if seen[ep.url] {
			continue
		}
		seen[ep.url] = true
		s.mirrors = append(s.mirrors, ep)
	}
	if cfg.Endpoint == "" {
		reg, err := name.NewRegistry(name.DefaultRegistry)
		if err != nil {
			return fmt.Errorf("docker hub registry: %w", err)
		}
		s.hub = endpoint{reg: reg, url: "https://" + name.DefaultRegistry + "/"}
		return nil
	}
	ep, err := s.newEndpoint(cfg.Endpoint, false)
	if err != nil {
		return fmt.Errorf("docker hub endpoint: %w", err)
	}
	s.hub = ep
	return nil
}

// registryFor is the registry a domain of a normalised reference is reached at, mirrors aside.
func (s *Service) registryFor(domain string) (name.Registry, error) {
	if domain == hubDomain && s.hub.url != "" {
		return s.hub.reg, nil
	}
	var opts []name.Option
	if s.insecureRegistry(domain) {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(domain, opts...)
	if err != nil {
		return name.Registry{}, errInvalid("invalid reference format: %v", err)
	}
	return reg, nil
}

// pullEndpoints are the registries a pull of n tries, in order: for Docker Hub images the
// mirrors and then Docker Hub, otherwise the image's own registry.
func (s *Service) pullEndpoints(n reference.Named) ([]endpoint, error) {
	domain := reference.Domain(n)
	reg, err := s.registryFor(domain)
	if err != nil {
		return nil, err
	}
	own := endpoint{reg: reg, url: domain}
	if domain == hubDomain {
		return append(slices.Clone(s.mirrors), own), nil
	}
	return []endpoint{own}, nil
}

// fallBack reports whether a failure on a mirror lets the pull go on with the next endpoint.
// Every mirror failure does (unreachable, 5xx, 404, refused credentials), except cancellation.
func fallBack(ctx context.Context, ep endpoint, err error) bool {
	return ep.mirror && ctx.Err() == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// RegistryConfig is /info's RegistryConfig in dockerd's shape: Docker Hub with its mirrors,
// each insecure registry given by name, and the insecure CIDRs (loopback always).
func (s *Service) RegistryConfig() *registry.ServiceConfig {
	mirrors := make([]string, 0, len(s.mirrors))
	for _, m := range s.mirrors {
		mirrors = append(mirrors, m.url)
	}
	cfg := &registry.ServiceConfig{
		InsecureRegistryCIDRs: []netip.Prefix{netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("127.0.0.0/8")},
		IndexConfigs: map[string]*registry.IndexInfo{
			hubDomain: {Name: hubDomain, Mirrors: mirrors, Secure: true, Official: true},
		},
		Mirrors: slices.Clone(mirrors),
	}
	for _, e := range s.insecure {
		if p, err := netip.ParsePrefix(e); err == nil {
			p = p.Masked()
			if !slices.Contains(cfg.InsecureRegistryCIDRs, p) {
				cfg.InsecureRegistryCIDRs = append(cfg.InsecureRegistryCIDRs, p)
			}
			continue
		}
		if _, ok := cfg.IndexConfigs[e]; !ok {
			cfg.IndexConfigs[e] = &registry.IndexInfo{Name: e, Mirrors: []string{}, Secure: false, Official: false}
		}
	}
	return cfg
}
