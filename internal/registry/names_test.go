package registry

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// The spec's grammars, compiled only in tests, to cross-check the hand-written validators.
const (
	specNameRE = `^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`
	specTagRE  = `^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`
)

func TestValidName(t *testing.T) {
	good := []string{"a", "library/ubuntu", "a/b/c/d", "a.b", "a_b", "a__b", "a-b", "a---b", "0", "conformance/repo1",
		"foo/blobs/uploads", "x/manifests/y", strings.Repeat("a", 255)}
	bad := []string{"", "A", "a/", "/a", "a//b", "a.", ".a", "a..b", "a___b", "a_.b", "a-", "-a", "a/B", "a b", "a:b",
		"a/_b", strings.Repeat("a", 256), "ä"}
	re := regexp.MustCompile(specNameRE)
	for _, n := range good {
		if !validName(n) {
			t.Errorf("validName(%q) = false, want true", n)
		}
		if len(n) <= 255 && !re.MatchString(n) {
			t.Errorf("test case %q does not match the spec grammar", n)
		}
	}
	for _, n := range bad {
		if validName(n) {
			t.Errorf("validName(%q) = true, want false", n)
		}
	}
}

func TestValidTag(t *testing.T) {
	good := []string{"latest", "v1.0", "_x", "A-b_c.d", "0", strings.Repeat("a", 128)}
	bad := []string{"", ".x", "-x", "a/b", "a:b", "a b", strings.Repeat("a", 129), "sha256"[:0]}
	for _, tg := range good {
		if !validTag(tg) {
			t.Errorf("validTag(%q) = false, want true", tg)
		}
	}
	for _, tg := range bad {
		if validTag(tg) {
			t.Errorf("validTag(%q) = true, want false", tg)
		}
	}
}

func TestParseDigest(t *testing.T) {
	h64 := strings.Repeat("ab", 32)
	h128 := strings.Repeat("cd", 64)
	for _, tc := range []struct {
		in   string
		alg  string
		good bool
	}{
		{"sha256:" + h64, "sha256", true},
		{"sha512:" + h128, "sha512", true},
		{"sha256:" + h128, "", false},
		{"sha512:" + h64, "", false},
		{"sha256:" + strings.ToUpper(h64), "", false},
		{"sha256:baddigeststring", "", false},
		{"md5:" + h64, "", false},
		{"sha256" + h64, "", false},
		{"sha256:../../" + h64[:58], "", false},
		{"", "", false},
	} {
		alg, hex, ok := parseDigest(tc.in)
		if ok != tc.good || (ok && (alg != tc.alg || alg+":"+hex != tc.in)) {
			t.Errorf("parseDigest(%q) = %q, %q, %v", tc.in, alg, hex, ok)
		}
	}
}

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		path string
		want route
		ok   bool
	}{
		{"/v2/", route{kind: routeBase}, true},
		{"/v2", route{kind: routeBase}, true},
		{"/v2/library/ubuntu/manifests/latest", route{routeManifest, "library/ubuntu", "latest"}, true},
		{"/v2/a/manifests/b/manifests/latest", route{routeManifest, "a/manifests/b", "latest"}, true},
		{"/v2/a/blobs/sha256:x", route{routeBlob, "a", "sha256:x"}, true},
		{"/v2/a/blobs/b/blobs/sha256:x", route{routeBlob, "a/blobs/b", "sha256:x"}, true},
		{"/v2/a/b/blobs/uploads/", route{routeUploadNew, "a/b", ""}, true},
		{"/v2/a/b/blobs/uploads", route{routeUploadNew, "a/b", ""}, true},
		{"/v2/a/blobs/uploads/blobs/uploads/", route{routeUploadNew, "a/blobs/uploads", ""}, true},
		{"/v2/a/blobs/uploads/0f0e-id", route{routeUpload, "a", "0f0e-id"}, true},
		{"/v2/a/tags/list", route{routeTags, "a", ""}, true},
		{"/v2/tags/tags/list", route{routeTags, "tags", ""}, true},
		{"/v2/a/referrers/sha256:x", route{routeReferrers, "a", "sha256:x"}, true},
		{"/v2/a/manifests/", route{}, false},
		{"/v2/manifests/latest", route{}, false},
		{"/v2/a/tags/other", route{}, false},
		{"/v2/a/uploads/x", route{}, false},
		{"/v2/a/unknown/x", route{}, false},
		{"/v3/a/manifests/x", route{}, false},
		{"/v2/a", route{}, false},
	} {
		got, ok := parseRoute(tc.path)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseRoute(%q) = %+v, %v; want %+v, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in         string
		start, end int64
		ok         bool
	}{
		{"0-99", 0, 99, true},
		{"100-199", 100, 199, true},
		{"bytes 0-99/100", 0, 99, true},
		{"bytes=5-9", 5, 9, true},
		{"0-", 0, 0, false},
		{"-5", 0, 0, false},
		{"9-3", 0, 0, false},
		{"a-b", 0, 0, false},
		{"+1-2", 0, 0, false},
		{"", 0, 0, false},
	} {
		s, e, ok := parseContentRange(tc.in)
		if ok != tc.ok || ok && (s != tc.start || e != tc.end) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v", tc.in, s, e, ok)
		}
	}
	if got := uploadRange(0); got != "0-0" {
		t.Errorf("uploadRange(0) = %q", got)
	}
	if got := uploadRange(10); got != "0-9" {
		t.Errorf("uploadRange(10) = %q", got)
	}
}

func TestSessionID(t *testing.T) {
	id, err := newSessionID()
	if err != nil {
		t.Fatal(err)
	}
	if !validSessionID(id) {
		t.Fatalf("generated id %q is not valid", id)
	}
	for _, bad := range []string{"", "../../etc/passwd", strings.ToUpper(id), id + "0", id[:35] + "/"} {
		if validSessionID(bad) {
			t.Errorf("validSessionID(%q) = true", bad)
		}
	}
}

// FuzzParseRoute checks the path parser and the validators against the spec's grammars: no
// panic, a parsed route reassembles to the path, and names and tags agree with the regexps.
func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/a/b/manifests/latest", "/v2/a/blobs/uploads/", "/v2/a/blobs/uploads/x",
		"/v2/x/tags/list", "/v2/a/referrers/sha256:" + strings.Repeat("0", 64), "/v2/a__b/manifests/sha512:x",
		"/v2//manifests/x", "/v2/a/blobs/b/blobs/uploads/", "/v2/A/manifests/_x"} {
		f.Add(s)
	}
	nameRE := regexp.MustCompile(specNameRE)
	tagRE := regexp.MustCompile(specTagRE)
	f.Fuzz(func(t *testing.T, path string) {
		rt, ok := parseRoute(path)
		if ok {
			var rebuilt string
			switch rt.kind {
			case routeBase:
				rebuilt = path
			case routeManifest:
				rebuilt = "/v2/" + rt.name + "/manifests/" + rt.ref
			case routeBlob:
				rebuilt = "/v2/" + rt.name + "/blobs/" + rt.ref
			case routeUploadNew:
				rebuilt = "/v2/" + rt.name + "/blobs/uploads"
				if strings.HasSuffix(path, "/") {
					rebuilt += "/"
				}
			case routeUpload:
				rebuilt = "/v2/" + rt.name + "/blobs/uploads/" + rt.ref
			case routeTags:
				rebuilt = "/v2/" + rt.name + "/tags/list"
			case routeReferrers:
				rebuilt = "/v2/" + rt.name + "/referrers/" + rt.ref
			}
			if rebuilt != path {
				t.Fatalf("parseRoute(%q) = %+v, which is %q", path, rt, rebuilt)
			}
		}
		for _, part := range []string{path, rt.name, rt.ref} {
			if got, want := validName(part), len(part) <= maxNameLength && nameRE.MatchString(part); got != want {
				t.Fatalf("validName(%q) = %v, spec grammar says %v", part, got, want)
			}
			if got, want := validTag(part), tagRE.MatchString(part); got != want {
				t.Fatalf("validTag(%q) = %v, spec grammar says %v", part, got, want)
			}
			if alg, hex, ok := parseDigest(part); ok && (strings.ContainsAny(hex, "/.") || alg+":"+hex != part) {
				t.Fatalf("parseDigest(%q) accepted an unsafe digest", part)
			}
			_, _, _ = parseContentRange(part)
		}
	})
}

// FuzzParseManifest checks that no manifest body makes the parser panic and that whatever
// it accepts has a supported media type and only valid digests.
func FuzzParseManifest(f *testing.F) {
	d := "sha256:" + strings.Repeat("a", 64)
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"`+d+`","size":2},"layers":[{"digest":"`+d+`"}]}`), "")
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"digest":"`+d+`"}],"subject":{"digest":"`+d+`"},"artifactType":"x"}`), mediaTypeOCIIndex)
	f.Add([]byte(`{"schemaVersion":2,"config":{"digest":"`+d+`"},"layers":[]}`), mediaTypeDockerManifest)
	f.Add([]byte(`{"schemaVersion":1}`), "")
	f.Add([]byte(`{"schemaVersion":2,"config":{"digest":"sha256:bad"}}`), "application/json; charset=utf-8")
	f.Add([]byte(`[]`), "")
	f.Fuzz(func(t *testing.T, body []byte, ct string) {
		p, err := parseManifest(body, ct)
		if err != nil {
			return
		}
		switch p.rec.MediaType {
		case mediaTypeOCIManifest, mediaTypeOCIIndex, mediaTypeDockerManifest, mediaTypeDockerList:
		default:
			t.Fatalf("accepted media type %q", p.rec.MediaType)
		}
		for _, dg := range append(append([]string{p.rec.Subject}, p.rec.Blobs...), p.rec.Manifests...) {
			if dg != "" && !validDigest(dg) {
				t.Fatalf("accepted invalid digest %q", dg)
			}
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON")
		}
	})
}
