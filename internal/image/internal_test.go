package image

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	"go.etcd.io/bbolt"
)

func testDB(t *testing.T) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "meta.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := initBuckets(db); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestResolve(t *testing.T) {
	db := testDB(t)
	idA := digest.FromString("a")
	idB := digest.FromString("b")
	// Make two IDs share a prefix to test ambiguity.
	idC := digest.Digest("sha256:" + idA.Encoded()[:10] + strings.Repeat("0", 54))
	canon := "docker.io/library/busybox@" + digest.FromString("manifest").String()
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, id := range []digest.Digest{idA, idB, idC} {
			if err := putImage(tx, &imageRecord{ID: id}); err != nil {
				return err
			}
		}
		for name, id := range map[string]digest.Digest{
			"docker.io/library/busybox:latest": idA,
			"example.com/x/y:1":                idB,
			canon:                              idB,
		} {
			if err := putRef(tx, name, refRecord{ID: id}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref  string
		want digest.Digest
		err  string
	}{
		{ref: "busybox", want: idA},
		{ref: "busybox:latest", want: idA},
		{ref: "library/busybox", want: idA},
		{ref: "docker.io/library/busybox:latest", want: idA},
		{ref: "example.com/x/y:1", want: idB},
		{ref: "busybox@" + digest.FromString("manifest").String(), want: idB},
		{ref: idB.String(), want: idB},
		{ref: idB.Encoded(), want: idB},
		{ref: idB.Encoded()[:1], want: idB},
		{ref: "sha256:" + idB.Encoded()[:5], want: idB},
		{ref: idA.Encoded()[:10], err: "No such image: " + idA.Encoded()[:10] + ":latest"}, // ambiguous
		{ref: idA.Encoded()[:11], want: idA},
		{ref: "nosuch", err: "No such image: nosuch:latest"},
		{ref: "example.com/x/y", err: "No such image: example.com/x/y:latest"},
		{ref: "sha256:" + strings.Repeat("f", 64), err: "No such image: sha256:" + strings.Repeat("f", 64)},
		{ref: "Busybox", err: "invalid reference format: repository name (library/Busybox) must be lowercase"},
		{ref: "", err: "invalid reference format: empty reference"},
	} {
		err := db.View(func(tx *bbolt.Tx) error {
			rec, _, err := resolve(tx, tc.ref)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Errorf("resolve(%q) err = %v, want %q", tc.ref, err, tc.err)
				}
				if strings.HasPrefix(tc.err, "No such") && !errdefs.IsNotFound(err) {
					t.Errorf("resolve(%q): not classified NotFound", tc.ref)
				}
				if strings.HasPrefix(tc.err, "invalid") && !errdefs.IsInvalidArgument(err) {
					t.Errorf("resolve(%q): not classified InvalidArgument", tc.ref)
				}
				return nil
			}
			if err != nil {
				t.Errorf("resolve(%q): %v", tc.ref, err)
			} else if rec.ID != tc.want {
				t.Errorf("resolve(%q) = %s, want %s", tc.ref, rec.ID, tc.want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// RepoDigests come from canonical names.
	err = db.View(func(tx *bbolt.Tx) error {
		refs, err := refsOf(tx, idB)
		if err != nil {
			return err
		}
		tags, digests := repoTagsDigests(refs)
		if !slices.Equal(tags, []string{"example.com/x/y:1"}) || !slices.Equal(digests, []string{"busybox@" + digest.FromString("manifest").String()}) {
			t.Errorf("tags %v digests %v", tags, digests)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestChainIDs(t *testing.T) {
	a, b, c := digest.FromString("a"), digest.FromString("b"), digest.FromString("c")
	got := chainIDs([]digest.Digest{a, b, c})
	ab := digest.FromString(a.String() + " " + b.String())
	abc := digest.FromString(ab.String() + " " + c.String())
	if !slices.Equal(got, []digest.Digest{a, ab, abc}) {
		t.Fatalf("chainIDs = %v", got)
	}
}

func TestApplyChanges(t *testing.T) {
	for _, tc := range []struct {
		changes []string
		check   func(c *dockerspec.DockerOCIImageConfig) bool
	}{
		{[]string{`CMD ["/bin/sh", "-c", "echo"]`}, func(c *dockerspec.DockerOCIImageConfig) bool {
			return slices.Equal(c.Cmd, []string{"/bin/sh", "-c", "echo"})
		}},
		{[]string{"CMD /bin/sh"}, func(c *dockerspec.DockerOCIImageConfig) bool {
			return slices.Equal(c.Cmd, []string{"/bin/sh", "-c", "/bin/sh"})
		}},
		{[]string{"cmd [\"a\"]", "ENTRYPOINT [\"e\"]"}, func(c *dockerspec.DockerOCIImageConfig) bool {
			return slices.Equal(c.Cmd, []string{"a"}) && slices.Equal(c.Entrypoint, []string{"e"})
		}},
		{[]string{"ENTRYPOINT top -b"}, func(c *dockerspec.DockerOCIImageConfig) bool {
			return slices.Equal(c.Entrypoint, []string{"/bin/sh", "-c", "top -b"}) && c.Cmd == nil
		}},
		{[]string{`ENV A=1 B="two words" C=a\ b`, "ENV D legacy value", "ENV A=3"}, func(c *dockerspec.DockerOCIImageConfig) bool {
			return slices.Equal(c.Env, []string{"A=3", "B=two words", "C=a b", "D=legacy value"})
		}},
		{[]string{`LABEL a=b "c d"='e f'`}, func(c *dockerspec.DockerOCIImageConfig) bool {
			return c.Labels["a"] == "b" && c.Labels["c d"] == "e f"
		}},
		{[]string{"EXPOSE 80 443/tcp 53/udp 8000-8002"}, func(c *dockerspec.DockerOCIImageConfig) bool {
			_, u := c.ExposedPorts["53/udp"]
			_, r := c.ExposedPorts["8001/tcp"]
			return len(c.ExposedPorts) == 6 && u && r
		}},
		{[]string{`VOLUME ["/a", "/b"]`, "VOLUME /c /d"}, func(c *dockerspec.DockerOCIImageConfig) bool { return len(c.Volumes) == 4 }},
		{[]string{"WORKDIR /a", "WORKDIR b", "WORKDIR ../c"}, func(c *dockerspec.DockerOCIImageConfig) bool { return c.WorkingDir == "/a/c" }},
		{[]string{"STOPSIGNAL 9"}, func(c *dockerspec.DockerOCIImageConfig) bool { return c.StopSignal == "9" }},
		{[]string{"STOPSIGNAL SIGRTMIN+3"}, func(c *dockerspec.DockerOCIImageConfig) bool { return c.StopSignal == "SIGRTMIN+3" }},
		{[]string{"USER 1000:1000"}, func(c *dockerspec.DockerOCIImageConfig) bool { return c.User == "1000:1000" }},
		{[]string{"onbuild add . /app"}, func(c *dockerspec.DockerOCIImageConfig) bool {
			return slices.Equal(c.OnBuild, []string{"ADD . /app"})
		}},
		{[]string{"HEALTHCHECK --interval=5s --retries=3 CMD curl -f http://localhost/"}, func(c *dockerspec.DockerOCIImageConfig) bool {
			h := c.Healthcheck
			return h != nil && h.Interval == 5*time.Second && h.Retries == 3 && slices.Equal(h.Test, []string{"CMD-SHELL", "curl -f http://localhost/"})
		}},
		{[]string{"HEALTHCHECK NONE"}, func(c *dockerspec.DockerOCIImageConfig) bool {
			return slices.Equal(c.Healthcheck.Test, []string{"NONE"})
		}},
		{[]string{"CMD [\"a\"]\nUSER x"}, func(c *dockerspec.DockerOCIImageConfig) bool { return c.User == "x" }},
	} {
		var c dockerspec.DockerOCIImageConfig
		if err := applyChanges(&c, tc.changes); err != nil {
			t.Errorf("%q: %v", tc.changes, err)
			continue
		}
		if !tc.check(&c) {
			b, _ := json.Marshal(c)
			t.Errorf("%q: config %s", tc.changes, b)
		}
	}
	for _, bad := range []string{"RUN echo", "CMD", "EXPOSE 99999", "EXPOSE 80/foo", "USER", "USER a b", "VOLUME", `VOLUME [""]`,
		"WORKDIR", "STOPSIGNAL", "STOPSIGNAL 0", "STOPSIGNAL FOO", "ONBUILD", "ONBUILD ONBUILD RUN x", "ENV A", "LABEL a=b c",
		"HEALTHCHECK", "HEALTHCHECK --interval=x CMD a", "HEALTHCHECK --bogus=1s CMD a", `ENV a='b`} {
		var c dockerspec.DockerOCIImageConfig
		err := applyChanges(&c, []string{bad})
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%q: err = %v, want invalid argument", bad, err)
		}
	}
}

func TestParseTimestamp(t *testing.T) {
	now := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"10m":                  now.Add(-10 * time.Minute),
		"1700000000":           time.Unix(1700000000, 0),
		"2023-01-01T00:00:00Z": time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		got, err := parseTimestamp(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTimestamp(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseTimestamp("yesterday", now); err == nil {
		t.Error("parsed garbage")
	}
}

func TestNamesFromAnnotations(t *testing.T) {
	for _, tc := range []struct {
		ann  map[string]string
		want string
	}{
		{map[string]string{annotationImageName: "docker.io/library/busybox:1", annotationRefName: "1"}, "docker.io/library/busybox:1"},
		{map[string]string{annotationRefName: "latest"}, ""},
		{map[string]string{annotationRefName: "busybox:latest"}, "docker.io/library/busybox:latest"},
		{map[string]string{annotationRefName: "quay.io/a/b"}, "quay.io/a/b:latest"},
		{map[string]string{annotationRefName: "INVALID:x"}, ""},
	} {
		names := namesFromAnnotations(tc.ann)
		got := ""
		if len(names) == 1 {
			got = names[0].String()
		}
		if got != tc.want {
			t.Errorf("%v -> %q, want %q", tc.ann, got, tc.want)
		}
	}
}

// FuzzParseRef checks that reference parsing never panics and that names it accepts are
// normalised and stable.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"busybox", "busybox:latest", "docker.io/library/busybox:1.36", "localhost:5000/a/b:c",
		"sha256:" + strings.Repeat("a", 64), strings.Repeat("b", 64), "abc", "a@sha256:" + strings.Repeat("c", 64),
		"UPPER", "", ":", "@", "a:b:c", "sha256:abc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseRef(s)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("parseRef(%q): unclassified error %v", s, err)
			}
			return
		}
		if p.named == nil {
			if p.id.Validate() != nil {
				t.Fatalf("parseRef(%q): invalid id %q", s, p.id)
			}
			return
		}
		again, err := parseRef(p.named.String())
		if err != nil || again.named == nil || again.named.String() != p.named.String() {
			t.Fatalf("parseRef(%q) = %s, not stable: %v", s, p.named, err)
		}
		if _, ok := p.named.(reference.Tagged); !ok {
			if _, ok := p.named.(reference.Canonical); !ok {
				t.Fatalf("parseRef(%q) = %s has neither tag nor digest", s, p.named)
			}
		}
		_ = p.String()
		_ = isIDPrefix(digest.FromString(s), s)
	})
}

// FuzzArchiveMetadata feeds the JSON decoders used on loaded archives.
func FuzzArchiveMetadata(f *testing.F) {
	f.Add([]byte(`[{"Config":"blobs/sha256/aa","RepoTags":["busybox:latest"],"Layers":["blobs/sha256/bb"]}]`))
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + strings.Repeat("a", 64) + `","size":1}]}`))
	f.Add([]byte(`{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + strings.Repeat("a", 64) + `","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:` + strings.Repeat("b", 64) + `","size":3}]}`))
	f.Add([]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("c", 64) + `"]}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[{}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(err error) {
			if err != nil && !errdefs.IsInvalidArgument(err) {
				t.Fatalf("unclassified error %v", err)
			}
		}
		items, err := parseDockerManifest(b)
		check(err)
		for _, it := range items {
			if it.Config == "" {
				t.Fatal("accepted an entry without Config")
			}
			_ = cleanArchivePath(it.Config)
		}
		idx, err := parseIndex(b)
		check(err)
		if err == nil {
			for _, d := range idx.Manifests {
				_ = namesFromAnnotations(d.Annotations)
			}
		}
		m, err := parseManifest(b)
		check(err)
		if err == nil && m.Config.Digest.Validate() != nil {
			t.Fatal("accepted a manifest with an invalid config digest")
		}
		_, err = parseConfig(b)
		check(err)
	})
}

// FuzzApplyChanges checks that change parsing never panics and only fails as invalid argument.
func FuzzApplyChanges(f *testing.F) {
	for _, s := range []string{`CMD ["/bin/sh"]`, "CMD /bin/sh", "ENV a=b c=\"d e\"", "ENV a b", "EXPOSE 80/tcp 1-3",
		"LABEL 'a'=b", "VOLUME [\"/x\"]", "WORKDIR x", "STOPSIGNAL SIGTERM", "ONBUILD RUN x", "HEALTHCHECK --retries=1 CMD [\"x\"]",
		"USER u", "ENV \\", "LABEL \"", "EXPOSE 0-65535"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var c dockerspec.DockerOCIImageConfig
		if err := applyChanges(&c, []string{s}); err != nil && !errdefs.IsInvalidArgument(err) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}
