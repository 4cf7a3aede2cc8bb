package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testRegistry is a registry on a temporary root behind an httptest server.
type testRegistry struct {
	t    *testing.T
	root string
	srv  *Server
	ts   *httptest.Server
}

func newTestRegistry(t *testing.T, cfg Config) *testRegistry {
	t.Helper()
	if cfg.Root == "" {
		cfg.Root = t.TempDir()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	tr := &testRegistry{t: t, root: cfg.Root, srv: s, ts: ts}
	t.Cleanup(tr.close)
	return tr
}

func (tr *testRegistry) close() {
	if tr.ts != nil {
		tr.ts.Close()
		_ = tr.srv.Close()
		tr.ts = nil
	}
}

// host is the registry's host:port, for references.
func (tr *testRegistry) host() string { return strings.TrimPrefix(tr.ts.URL, "http://") }

// do sends a request and returns the response with its body read.
func (tr *testRegistry) do(method, path string, body []byte, hdr ...string) (*http.Response, []byte) {
	tr.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, tr.ts.URL+path, rd)
	if err != nil {
		tr.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := tr.ts.Client().Do(req)
	if err != nil {
		tr.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tr.t.Fatal(err)
	}
	return resp, b
}

// expect checks a status and, for errors, the first error code of the body.
func expect(t *testing.T, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, body)
	}
	if code == "" {
		return
	}
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) == 0 {
		t.Fatalf("%s %s: error body %q is not the spec's format (%v)", resp.Request.Method, resp.Request.URL.Path, body, err)
	}
	if eb.Errors[0].Code != code {
		t.Fatalf("%s %s: error code %s, want %s (%s)", resp.Request.Method, resp.Request.URL.Path, eb.Errors[0].Code, code, body)
	}
	if resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("error Content-Type %q", resp.Header.Get("Content-Type"))
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// pushBlob uploads a blob with a single POST.
func (tr *testRegistry) pushBlob(name string, b []byte) string {
	tr.t.Helper()
	d := sha(b)
	resp, body := tr.do("POST", "/v2/"+name+"/blobs/uploads/?digest="+d, b)
	expect(tr.t, resp, body, http.StatusCreated, "")
	return d
}

// pushImage pushes a config and one layer and a manifest referencing them; it returns the
// manifest body and digest.
func (tr *testRegistry) pushImage(name, ref string, extra string) ([]byte, string) {
	tr.t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"x":"` + ref + extra + `"}`)
	layer := []byte("layer of " + name + ref + extra)
	cd, ld := tr.pushBlob(name, cfg), tr.pushBlob(name, layer)
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]%s}`,
		mediaTypeOCIManifest, cd, len(cfg), ld, len(layer), extra)
	resp, body := tr.do("PUT", "/v2/"+name+"/manifests/"+ref, []byte(m), "Content-Type", mediaTypeOCIManifest)
	expect(tr.t, resp, body, http.StatusCreated, "")
	return []byte(m), sha([]byte(m))
}

func TestBaseAndErrors(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	resp, body := tr.do("GET", "/v2/", nil)
	expect(t, resp, body, 200, "")
	if string(body) != "{}" || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("GET /v2/: %q %v", body, resp.Header)
	}
	d := sha([]byte("nope"))
	resp, body = tr.do("GET", "/v2/a/b/blobs/"+d, nil)
	expect(t, resp, body, 404, codeBlobUnknown)
	var eb errorBody
	_ = json.Unmarshal(body, &eb)
	if det, _ := eb.Errors[0].Detail.(map[string]any); det["digest"] != d || eb.Errors[0].Message == "" {
		t.Fatalf("error detail: %s", body)
	}
	resp, body = tr.do("HEAD", "/v2/a/b/blobs/"+d, nil)
	expect(t, resp, body, 404, "")
	if len(body) != 0 {
		t.Fatalf("HEAD error has a body")
	}
	resp, body = tr.do("GET", "/v2/Bad/manifests/latest", nil)
	expect(t, resp, body, 400, codeNameInvalid)
	resp, body = tr.do("GET", "/v2/a/manifests/sha256:baddigeststring", nil)
	expect(t, resp, body, 400, codeDigestInvalid)
	resp, body = tr.do("GET", "/v2/a/manifests/latest", nil)
	expect(t, resp, body, 404, codeManifestUnknown)
	resp, body = tr.do("GET", "/v2/a/tags/list", nil)
	expect(t, resp, body, 404, codeNameUnknown)
	resp, body = tr.do("GET", "/v2/a/blobs/uploads/"+"00000000-0000-4000-8000-000000000000", nil)
	expect(t, resp, body, 404, codeBlobUploadUnknown)
	resp, body = tr.do("POST", "/v2/a/manifests/latest", nil)
	expect(t, resp, body, 405, codeUnsupported)
	resp, body = tr.do("GET", "/v2/a/whatever/x", nil)
	expect(t, resp, body, 404, codeUnsupported)
}

func TestChunkedUpload(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	data := bytes.Repeat([]byte("0123456789"), 1000)
	d := sha(data)

	resp, body := tr.do("POST", "/v2/r/blobs/uploads/", nil)
	expect(t, resp, body, 202, "")
	loc := resp.Header.Get("Location")
	if resp.Header.Get("Range") != "0-0" || resp.Header.Get("Docker-Upload-UUID") == "" || !strings.HasPrefix(loc, "/v2/r/blobs/uploads/") {
		t.Fatalf("POST headers: %v", resp.Header)
	}
	resp, body = tr.do("PATCH", loc, data[:4000], "Content-Range", "0-3999", "Content-Type", "application/octet-stream")
	expect(t, resp, body, 202, "")
	if resp.Header.Get("Range") != "0-3999" {
		t.Fatalf("Range after first chunk: %q", resp.Header.Get("Range"))
	}
	// out of order: 416 with the current range, and the session survives
	resp, body = tr.do("PATCH", loc, data[5000:6000], "Content-Range", "5000-5999")
	expect(t, resp, body, 416, codeBlobUploadInvalid)
	if resp.Header.Get("Range") != "0-3999" {
		t.Fatalf("Range of 416: %q", resp.Header.Get("Range"))
	}
	resp, body = tr.do("PATCH", loc, data[:10], "Content-Range", "garbage")
	expect(t, resp, body, 416, "")
	resp, body = tr.do("GET", loc, nil)
	expect(t, resp, body, 204, "")
	if resp.Header.Get("Range") != "0-3999" {
		t.Fatalf("status Range %q", resp.Header.Get("Range"))
	}
	// streamed chunk without Content-Range
	resp, body = tr.do("PATCH", loc, data[4000:8000])
	expect(t, resp, body, 202, "")
	// chunk whose declared range does not match its length
	resp, body = tr.do("PATCH", loc, data[8000:8500], "Content-Range", "8000-8999")
	expect(t, resp, body, 400, codeSizeInvalid)
	// closing PUT with the final chunk
	resp, body = tr.do("PUT", loc+"?digest="+d, data[8000:], "Content-Range", "8000-9999")
	expect(t, resp, body, 201, "")
	if resp.Header.Get("Location") != "/v2/r/blobs/"+d || resp.Header.Get("Docker-Content-Digest") != d {
		t.Fatalf("PUT headers: %v", resp.Header)
	}
	resp, body = tr.do("GET", "/v2/r/blobs/"+d, nil)
	expect(t, resp, body, 200, "")
	if !bytes.Equal(body, data) {
		t.Fatal("blob content differs")
	}
	// the session is gone
	resp, body = tr.do("GET", loc, nil)
	expect(t, resp, body, 404, codeBlobUploadUnknown)
	if entries, _ := os.ReadDir(filepath.Join(tr.root, uploadsDir)); len(entries) != 0 {
		t.Fatalf("upload files left: %v", entries)
	}
}

func TestUploadDigestMismatchAndCancel(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	data := []byte("some content")
	bad := sha([]byte("other content"))
	resp, body := tr.do("POST", "/v2/r/blobs/uploads/?digest="+bad, data)
	expect(t, resp, body, 400, codeDigestInvalid)
	resp, _ = tr.do("POST", "/v2/r/blobs/uploads/", nil)
	loc := resp.Header.Get("Location")
	resp, body = tr.do("PUT", loc+"?digest="+bad, data)
	expect(t, resp, body, 400, codeDigestInvalid)
	resp, body = tr.do("HEAD", "/v2/r/blobs/"+bad, nil)
	expect(t, resp, body, 404, "")
	resp, _ = tr.do("POST", "/v2/r/blobs/uploads/", nil)
	loc = resp.Header.Get("Location")
	resp, body = tr.do("PUT", loc, data)
	expect(t, resp, body, 400, codeDigestInvalid)
	resp, body = tr.do("DELETE", loc, nil)
	expect(t, resp, body, 204, "")
	resp, body = tr.do("DELETE", loc, nil)
	expect(t, resp, body, 404, codeBlobUploadUnknown)
	for _, dir := range []string{uploadsDir, ingestDir, filepath.Join(blobsDir, algSHA256)} {
		if entries, _ := os.ReadDir(filepath.Join(tr.root, dir)); len(entries) != 0 {
			t.Fatalf("files left in %s: %v", dir, entries)
		}
	}
}

func TestBlobRangeAndMount(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	data := []byte("0123456789abcdef")
	d := tr.pushBlob("src", data)
	resp, body := tr.do("GET", "/v2/src/blobs/"+d, nil, "Range", "bytes=2-5")
	expect(t, resp, body, 206, "")
	if string(body) != "2345" || resp.Header.Get("Content-Range") != "bytes 2-5/16" {
		t.Fatalf("range: %q %v", body, resp.Header)
	}
	resp, body = tr.do("GET", "/v2/src/blobs/"+d, nil, "Range", "bytes=20-30")
	expect(t, resp, body, 416, "")
	resp, body = tr.do("HEAD", "/v2/src/blobs/"+d, nil)
	expect(t, resp, body, 200, "")
	if resp.ContentLength != 16 || resp.Header.Get("Docker-Content-Digest") != d {
		t.Fatalf("HEAD: %v", resp.Header)
	}
	// linked per repository
	resp, body = tr.do("HEAD", "/v2/dst/blobs/"+d, nil)
	expect(t, resp, body, 404, "")
	// mount from a repository that lacks it: fallback to an upload session
	resp, body = tr.do("POST", "/v2/dst/blobs/uploads/?mount="+d+"&from=other", nil)
	expect(t, resp, body, 202, "")
	resp, body = tr.do("POST", "/v2/dst/blobs/uploads/?mount="+d+"&from=src", nil)
	expect(t, resp, body, 201, "")
	if resp.Header.Get("Location") != "/v2/dst/blobs/"+d {
		t.Fatalf("mount Location %q", resp.Header.Get("Location"))
	}
	resp, body = tr.do("GET", "/v2/dst/blobs/"+d, nil)
	expect(t, resp, body, 200, "")
	// mount without from: the content is known
	resp, body = tr.do("POST", "/v2/third/blobs/uploads/?mount="+d, nil)
	expect(t, resp, body, 201, "")
	// delete unlinks from one repository only
	resp, body = tr.do("DELETE", "/v2/src/blobs/"+d, nil)
	expect(t, resp, body, 202, "")
	resp, body = tr.do("GET", "/v2/src/blobs/"+d, nil)
	expect(t, resp, body, 404, codeBlobUnknown)
	resp, body = tr.do("GET", "/v2/dst/blobs/"+d, nil)
	expect(t, resp, body, 200, "")
	resp, body = tr.do("DELETE", "/v2/src/blobs/"+d, nil)
	expect(t, resp, body, 404, codeBlobUnknown)
}

func TestManifestValidation(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	cfg := tr.pushBlob("r", []byte(`{}`))
	missing := sha([]byte("missing layer"))
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"x","digest":%q,"size":2},"layers":[{"digest":%q,"size":1},{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":%q,"size":5,"urls":["https://example.com"]}]}`,
		mediaTypeOCIManifest, cfg, missing, sha([]byte("foreign")))
	resp, body := tr.do("PUT", "/v2/r/manifests/v1", []byte(m), "Content-Type", mediaTypeOCIManifest)
	expect(t, resp, body, 400, codeManifestBlobUnknown)
	var eb errorBody
	_ = json.Unmarshal(body, &eb)
	if len(eb.Errors) != 1 || !strings.Contains(string(body), missing) {
		t.Fatalf("missing blob errors: %s", body)
	}
	// digest reference must match the body
	resp, body = tr.do("PUT", "/v2/r/manifests/"+sha([]byte("x")), []byte(`{"schemaVersion":2,"config":{"digest":"`+cfg+`"}}`))
	expect(t, resp, body, 400, codeDigestInvalid)
	for _, tc := range []struct{ body, ct string }{
		{`not json`, mediaTypeOCIManifest},
		{`{"schemaVersion":1}`, ""},
		{`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`, ""},
		{`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`, mediaTypeOCIManifest},
		{`{"schemaVersion":2,"mediaType":"application/x-unknown","config":{"digest":"` + cfg + `"}}`, ""},
	} {
		resp, body = tr.do("PUT", "/v2/r/manifests/bad", []byte(tc.body), "Content-Type", tc.ct)
		expect(t, resp, body, 400, codeManifestInvalid)
	}
	resp, body = tr.do("PUT", "/v2/r/manifests/bad:tag", []byte(`{}`))
	expect(t, resp, body, 400, codeDigestInvalid)
	resp, body = tr.do("PUT", "/v2/r/manifests/.bad", []byte(`{}`))
	expect(t, resp, body, 400, codeManifestInvalid)
	big := append([]byte(`{"schemaVersion":2,"annotations":{"a":"`), bytes.Repeat([]byte("a"), maxManifestSize)...)
	resp, body = tr.do("PUT", "/v2/r/manifests/big", append(big, `"}}`...))
	expect(t, resp, body, 413, codeManifestInvalid)
	// an index needs its children in the repository
	idx := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":1}]}`, mediaTypeOCIIndex, mediaTypeOCIManifest, missing)
	resp, body = tr.do("PUT", "/v2/r/manifests/idx", []byte(idx), "Content-Type", mediaTypeOCIIndex)
	expect(t, resp, body, 400, codeManifestBlobUnknown)
}

func TestManifestsTagsAndDelete(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	m1, d1 := tr.pushImage("repo/x", "v1", "")
	resp, body := tr.do("GET", "/v2/repo/x/manifests/v1", nil, "Accept", mediaTypeOCIManifest)
	expect(t, resp, body, 200, "")
	if !bytes.Equal(body, m1) || resp.Header.Get("Content-Type") != mediaTypeOCIManifest || resp.Header.Get("Docker-Content-Digest") != d1 {
		t.Fatalf("GET manifest: %v", resp.Header)
	}
	resp, body = tr.do("HEAD", "/v2/repo/x/manifests/"+d1, nil)
	expect(t, resp, body, 200, "")
	if resp.ContentLength != int64(len(m1)) || len(body) != 0 {
		t.Fatalf("HEAD manifest: %v", resp.Header)
	}
	// push by digest, then tag it too
	resp, body = tr.do("PUT", "/v2/repo/x/manifests/"+d1, m1, "Content-Type", mediaTypeOCIManifest)
	expect(t, resp, body, 201, "")
	for _, tag := range []string{"b", "a", "c", "v2"} {
		resp, body = tr.do("PUT", "/v2/repo/x/manifests/"+tag, m1, "Content-Type", mediaTypeOCIManifest)
		expect(t, resp, body, 201, "")
	}
	list := func(q string) ([]string, string) {
		resp, body := tr.do("GET", "/v2/repo/x/tags/list"+q, nil)
		expect(t, resp, body, 200, "")
		var tl struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(body, &tl); err != nil || tl.Name != "repo/x" || tl.Tags == nil {
			t.Fatalf("tag list %s: %s", q, body)
		}
		return tl.Tags, resp.Header.Get("Link")
	}
	if tags, link := list(""); strings.Join(tags, ",") != "a,b,c,v1,v2" || link != "" {
		t.Fatalf("tags %v link %q", tags, link)
	}
	tags, link := list("?n=2")
	if strings.Join(tags, ",") != "a,b" || link != `</v2/repo/x/tags/list?last=b&n=2>; rel="next"` {
		t.Fatalf("page 1: %v %q", tags, link)
	}
	if tags, link = list("?n=2&last=b"); strings.Join(tags, ",") != "c,v1" || link == "" {
		t.Fatalf("page 2: %v %q", tags, link)
	}
	if tags, link = list("?n=2&last=v1"); strings.Join(tags, ",") != "v2" || link != "" {
		t.Fatalf("page 3: %v %q", tags, link)
	}
	if tags, link = list("?last=bb"); strings.Join(tags, ",") != "c,v1,v2" || link != "" {
		t.Fatalf("last only: %v %q", tags, link)
	}
	if tags, link = list("?n=0"); len(tags) != 0 || link != "" {
		t.Fatalf("n=0: %v %q", tags, link)
	}
	resp, body = tr.do("GET", "/v2/repo/x/tags/list?n=-1", nil)
	expect(t, resp, body, 400, "")

	// delete a tag: the manifest stays
	resp, body = tr.do("DELETE", "/v2/repo/x/manifests/a", nil)
	expect(t, resp, body, 202, "")
	resp, body = tr.do("GET", "/v2/repo/x/manifests/a", nil)
	expect(t, resp, body, 404, codeManifestUnknown)
	resp, body = tr.do("DELETE", "/v2/repo/x/manifests/a", nil)
	expect(t, resp, body, 404, codeManifestUnknown)
	// delete the manifest: its tags go too
	resp, body = tr.do("DELETE", "/v2/repo/x/manifests/"+d1, nil)
	expect(t, resp, body, 202, "")
	for _, ref := range []string{d1, "b", "v1"} {
		resp, body = tr.do("GET", "/v2/repo/x/manifests/"+ref, nil)
		expect(t, resp, body, 404, codeManifestUnknown)
	}
	if tags, _ := list(""); len(tags) != 0 {
		t.Fatalf("tags left: %v", tags)
	}
	resp, body = tr.do("DELETE", "/v2/nope/manifests/"+d1, nil)
	expect(t, resp, body, 404, codeNameUnknown)
}

func TestNoDelete(t *testing.T) {
	tr := newTestRegistry(t, Config{NoDelete: true})
	_, d := tr.pushImage("r", "v1", "")
	resp, body := tr.do("DELETE", "/v2/r/manifests/"+d, nil)
	expect(t, resp, body, 405, codeUnsupported)
	resp, body = tr.do("DELETE", "/v2/r/manifests/v1", nil)
	expect(t, resp, body, 405, codeUnsupported)
	resp, body = tr.do("DELETE", "/v2/r/blobs/"+d, nil)
	expect(t, resp, body, 405, codeUnsupported)
	resp, body = tr.do("GET", "/v2/r/manifests/v1", nil)
	expect(t, resp, body, 200, "")
}

func TestReferrersFiltering(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	_, subject := tr.pushImage("r", "v1", "")
	emptyCfg := tr.pushBlob("r", []byte("{}"))
	artifact := func(artifactType, configType, note string) string {
		at := ""
		if artifactType != "" {
			at = fmt.Sprintf(`"artifactType":%q,`, artifactType)
		}
		m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,%s"config":{"mediaType":%q,"digest":%q,"size":2},"layers":[],"subject":{"mediaType":%q,"digest":%q,"size":1},"annotations":{"note":%q}}`,
			mediaTypeOCIManifest, at, configType, emptyCfg, mediaTypeOCIManifest, subject, note)
		resp, body := tr.do("PUT", "/v2/r/manifests/"+sha([]byte(m)), []byte(m), "Content-Type", mediaTypeOCIManifest)
		expect(t, resp, body, 201, "")
		if resp.Header.Get("OCI-Subject") != subject {
			t.Fatalf("OCI-Subject %q", resp.Header.Get("OCI-Subject"))
		}
		return sha([]byte(m))
	}
	sig := artifact("application/vnd.example.sig", "application/vnd.oci.empty.v1+json", "sig")
	sbom := artifact("", "application/vnd.example.sbom", "sbom")

	get := func(q string) ([]descriptor, *http.Response) {
		resp, body := tr.do("GET", "/v2/r/referrers/"+subject+q, nil)
		expect(t, resp, body, 200, "")
		if resp.Header.Get("Content-Type") != mediaTypeOCIIndex {
			t.Fatalf("referrers Content-Type %q", resp.Header.Get("Content-Type"))
		}
		var idx struct {
			SchemaVersion int          `json:"schemaVersion"`
			MediaType     string       `json:"mediaType"`
			Manifests     []descriptor `json:"manifests"`
		}
		if err := json.Unmarshal(body, &idx); err != nil || idx.SchemaVersion != 2 || idx.MediaType != mediaTypeOCIIndex || idx.Manifests == nil {
			t.Fatalf("referrers body %s", body)
		}
		return idx.Manifests, resp
	}
	all, resp := get("")
	if len(all) != 2 || resp.Header.Get("OCI-Filters-Applied") != "" {
		t.Fatalf("referrers: %+v", all)
	}
	for _, d := range all {
		switch d.Digest {
		case sig:
			if d.ArtifactType != "application/vnd.example.sig" || d.Annotations["note"] != "sig" {
				t.Fatalf("sig descriptor %+v", d)
			}
		case sbom:
			if d.ArtifactType != "application/vnd.example.sbom" || d.MediaType != mediaTypeOCIManifest || d.Size == 0 {
				t.Fatalf("sbom descriptor %+v (artifactType must fall back to the config media type)", d)
			}
		default:
			t.Fatalf("unexpected referrer %+v", d)
		}
	}
	only, resp := get("?artifactType=application/vnd.example.sbom")
	if len(only) != 1 || only[0].Digest != sbom || resp.Header.Get("OCI-Filters-Applied") != "artifactType" {
		t.Fatalf("filtered: %+v %v", only, resp.Header)
	}
	// unknown subject, unknown repository: empty list, never 404
	if none, _ := get("?artifactType=x"); len(none) != 0 {
		t.Fatalf("filter x: %+v", none)
	}
	resp2, body := tr.do("GET", "/v2/unknown/referrers/"+subject, nil)
	expect(t, resp2, body, 200, "")
	resp2, body = tr.do("GET", "/v2/r/referrers/sha256:bad", nil)
	expect(t, resp2, body, 400, codeDigestInvalid)
	// deleting a referrer removes it from the list
	resp2, body = tr.do("DELETE", "/v2/r/manifests/"+sig, nil)
	expect(t, resp2, body, 202, "")
	if left, _ := get(""); len(left) != 1 || left[0].Digest != sbom {
		t.Fatalf("after delete: %+v", left)
	}
}

func TestTagParamsAndSHA512(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	cfg := []byte("{}")
	s := sha512Digest(cfg)
	resp, body := tr.do("POST", "/v2/r/blobs/uploads/?digest="+s, cfg)
	expect(t, resp, body, 201, "")
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},"layers":[]}`, mediaTypeOCIManifest, s)
	md := sha512Digest([]byte(m))
	resp, body = tr.do("PUT", "/v2/r/manifests/"+md+"?tag=one&tag=two", []byte(m), "Content-Type", mediaTypeOCIManifest)
	expect(t, resp, body, 201, "")
	if resp.Header.Get("Docker-Content-Digest") != md || strings.Join(resp.Header.Values("OCI-Tag"), ",") != "one,two" {
		t.Fatalf("PUT headers %v", resp.Header)
	}
	resp, body = tr.do("GET", "/v2/r/manifests/two", nil)
	expect(t, resp, body, 200, "")
	if resp.Header.Get("Docker-Content-Digest") != md || string(body) != m {
		t.Fatalf("GET by tag: %v", resp.Header)
	}
}

func sha512Digest(b []byte) string { return algSHA512 + ":" + hexSum(algSHA512, b) }
