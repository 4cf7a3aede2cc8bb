package image

import (
	"strings"
	"testing"
)

func TestInsecureRegistry(t *testing.T) {
	s := &Service{insecure: []string{"reg.lan:5000", "10.1.0.0/16", "plain.example"}}
	for domain, want := range map[string]bool{
		"localhost:5000": true, "localhost": true, "127.0.0.1:5000": true, "127.9.9.9": true, "[::1]:5000": true,
		"reg.lan:5000": true, "reg.lan:5001": false, "10.1.2.3:443": true, "10.2.0.1": false,
		"plain.example:8080": true, "docker.io": false, "ghcr.io": false,
	} {
		if got := s.insecureRegistry(domain); got != want {
			t.Errorf("insecureRegistry(%q) = %v, want %v", domain, got, want)
		}
	}
}

func TestNormalizeRef(t *testing.T) {
	s := &Service{}
	for in, want := range map[string]string{
		"busybox":                             "docker.io/library/busybox:latest",
		"busybox:1.36":                        "docker.io/library/busybox:1.36",
		"localhost:5000/a/b":                  "localhost:5000/a/b:latest",
		"ghcr.io/o/r:v1@sha256:" + sixtyFourA: "ghcr.io/o/r@sha256:" + sixtyFourA,
	} {
		n, r, err := s.normalizeRef(in)
		if err != nil || n.String() != want {
			t.Errorf("normalizeRef(%q) = %v, %v; want %s", in, n, err, want)
			continue
		}
		if r.Context().RegistryStr() == "" {
			t.Errorf("normalizeRef(%q): no registry", in)
		}
	}
	if _, r, _ := s.normalizeRef("localhost:5000/x"); r.Context().Scheme() != "http" {
		t.Error("localhost registry is not plain HTTP")
	}
}

const sixtyFourA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func FuzzParsePlatformAndRef(f *testing.F) {
	for _, s := range []string{"", "linux", "linux/amd64", "linux/arm/v7", "a/b/c/d", "/", "busybox", "localhost:5000/a:b", "x@sha256:" + sixtyFourA} {
		f.Add(s)
	}
	s := &Service{}
	f.Fuzz(func(t *testing.T, in string) {
		if p, err := parsePlatform(in); err == nil && p.OS == "" {
			t.Fatalf("parsePlatform(%q) accepted an empty OS", in)
		}
		if n, r, err := s.normalizeRef(in); err == nil && (n == nil || r == nil) {
			t.Fatalf("normalizeRef(%q) returned nil without error", in)
		}
		_ = registryHost(in)
	})
}

func FuzzParseRegistryURL(f *testing.F) {
	for _, s := range []string{"https://mirror.gcr.io", "http://10.0.0.1:5000/", "mirror.example", "ftp://x", "https://u:p@x", "https://x/p", "https://x/?q", "http://[::1]:5000", "://", "https://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		u, norm, err := parseRegistryURL(in)
		if err != nil {
			return
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !strings.HasSuffix(norm, "/") {
			t.Fatalf("parseRegistryURL(%q) accepted %+v %q", in, u, norm)
		}
	})
}
