package build

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fakeBackend keeps images in memory; Mutate hands out a fresh directory per step.
type fakeBackend struct {
	t      *testing.T
	images map[string]dockerspec.DockerOCIImage
	runs   []RunRequest
	tags   map[string]string
	n      int
	roots  map[string]string // image -> directory its Mutate wrote
}

func newFake(t *testing.T) *fakeBackend {
	f := &fakeBackend{t: t, images: map[string]dockerspec.DockerOCIImage{}, tags: map[string]string{}, roots: map[string]string{}}
	base := dockerspec.DockerOCIImage{}
	base.Config.Env = []string{"PATH=/bin"}
	base.Config.Cmd = []string{"sh"}
	f.images["sha256:base"] = base
	f.tags["busybox:latest"] = "sha256:base"
	return f
}

func (f *fakeBackend) Image(_ context.Context, ref string) (ImageInfo, error) {
	if id, ok := f.tags[ref]; ok {
		ref = id
	}
	if id, ok := f.tags[ref+":latest"]; ok {
		ref = id
	}
	img, ok := f.images[ref]
	if !ok {
		return ImageInfo{}, fmt.Errorf("no such image %s", ref)
	}
	return ImageInfo{ID: ref, Image: img}, nil
}

func (f *fakeBackend) commit(img dockerspec.DockerOCIImage, createdBy string, empty bool) string {
	f.n++
	img.History = append(slices.Clone(img.History), ocispec.History{CreatedBy: createdBy, EmptyLayer: empty})
	id := fmt.Sprintf("sha256:%064d", f.n)
	f.images[id] = img
	return id
}

func (f *fakeBackend) Commit(_ context.Context, _ string, img dockerspec.DockerOCIImage, createdBy string) (string, error) {
	return f.commit(img, createdBy, true), nil
}

func (f *fakeBackend) Mutate(_ context.Context, _ string, img dockerspec.DockerOCIImage, createdBy string, fn func(string) error) (string, error) {
	dir := f.t.TempDir()
	if err := fn(dir); err != nil {
		return "", err
	}
	id := f.commit(img, createdBy, false)
	f.roots[id] = dir
	return id, nil
}

func (f *fakeBackend) View(_ context.Context, id string, fn func(string) error) error {
	if d, ok := f.roots[id]; ok {
		return fn(d)
	}
	return fn(f.t.TempDir())
}

func (f *fakeBackend) Run(_ context.Context, req RunRequest) (string, error) {
	f.runs = append(f.runs, req)
	if req.Container != nil {
		req.Container("c0ffee0000000000", false)
		req.Container("c0ffee0000000000", true)
	}
	if slices.Contains(req.Args, "fail") {
		return "", &ExitError{Code: 2}
	}
	return f.commit(req.Image, req.CreatedBy, false), nil
}

func (f *fakeBackend) Tag(_ context.Context, id, ref string) error {
	f.tags[ref] = id
	return nil
}

type mapCache map[string]string

func (m mapCache) Get(k string) (string, bool) { v, ok := m[k]; return v, ok }
func (m mapCache) Put(k, v string) error       { m[k] = v; return nil }

func writeCtx(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func strp(s string) *string { return &s }

func TestInstructions(t *testing.T) {
	f := newFake(t)
	df := `ARG BASE=busybox
FROM ${BASE} AS first
ARG V=default
ENV A=1 B=${V}-x
WORKDIR /a
WORKDIR b
USER nobody
EXPOSE 80 53/udp
LABEL k=$A
SHELL ["/bin/ash", "-c"]
RUN echo $A
ENTRYPOINT ["/e"]
STOPSIGNAL SIGKILL
VOLUME /v
ONBUILD RUN echo hi

FROM first
CMD echo done
`
	var out bytes.Buffer
	res, err := New(f, mapCache{}).Build(context.Background(), Options{
		ContextDir: writeCtx(t, map[string]string{"Dockerfile": df}),
		Tags:       []string{"t"}, BuildArgs: map[string]*string{"V": strp("given"), "HTTP_PROXY": strp("p"), "unused": strp("x")},
		Labels: map[string]string{"l": "v"}, Out: &out,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	img := f.images[res.ID]
	c := img.Config
	if strings.Join(c.Env, ",") != "PATH=/bin,A=1,B=given-x" || c.WorkingDir != "/a/b" || c.User != "nobody" ||
		c.Labels["k"] != "1" || c.Labels["l"] != "v" || c.StopSignal != "SIGKILL" || len(c.ExposedPorts) != 2 {
		t.Fatalf("config: %+v", c)
	}
	if _, ok := c.ExposedPorts["53/udp"]; !ok {
		t.Errorf("ports: %v", c.ExposedPorts)
	}
	// ENTRYPOINT reset the inherited CMD; the second stage's shell-form CMD uses the SHELL.
	if strings.Join(c.Entrypoint, " ") != "/e" || strings.Join(c.Cmd, "|") != "/bin/ash|-c|echo done" {
		t.Errorf("entrypoint/cmd: %q %q", c.Entrypoint, c.Cmd)
	}
	// The ONBUILD trigger ran when "first" was used as a base, and is not inherited.
	if len(c.OnBuild) != 0 || len(f.runs) != 2 || f.runs[1].CreatedBy != "/bin/ash -c echo hi" {
		t.Fatalf("onbuild: %v %+v", c.OnBuild, f.runs)
	}
	r := f.runs[0]
	if strings.Join(r.Args, "|") != "/bin/ash|-c|echo $A" || r.CreatedBy != "|1 V=given /bin/ash -c echo $A" ||
		!slices.Contains(r.Env, "HTTP_PROXY=p") || !slices.Contains(r.Env, "V=given") || r.User != "nobody" || r.WorkingDir != "/a/b" {
		t.Fatalf("run: %+v", r)
	}
	if strings.Contains(r.CreatedBy, "HTTP_PROXY") {
		t.Errorf("proxy arg in history: %s", r.CreatedBy)
	}
	o := out.String()
	for _, want := range []string{"Step 1/17 : FROM ${BASE} AS first", " ---> Running in c0ffee000000", "Removing intermediate container c0ffee000000",
		"# Executing 1 build trigger", "[Warning] One or more build-args [unused] were not consumed", "Successfully tagged t:latest"} {
		if !strings.Contains(o, want) {
			t.Errorf("output lacks %q:\n%s", want, o)
		}
	}
	if f.tags["t:latest"] != res.ID {
		t.Errorf("tag: %v", f.tags)
	}
	h := img.History[len(img.History)-2]
	if h.CreatedBy != `/bin/ash -c #(nop)  CMD ["/bin/ash","-c","echo done"]` || !h.EmptyLayer {
		t.Errorf("history: %+v", h)
	}
}

func TestCacheAndTarget(t *testing.T) {
	f := newFake(t)
	cache := mapCache{}
	dir := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox AS a\nENV X=1\nRUN true\nFROM a AS b\nRUN fail\n"})
	b := New(f, cache)
	build := func(o Options) (Result, string, error) {
		var out bytes.Buffer
		o.ContextDir, o.Out = dir, &out
		r, err := b.Build(context.Background(), o)
		return r, out.String(), err
	}
	r1, _, err := build(Options{Target: "a"})
	if err != nil {
		t.Fatal(err)
	}
	r2, out, err := build(Options{Target: "a"})
	if err != nil || r2.ID != r1.ID || strings.Count(out, "Using cache") != 2 || len(f.runs) != 1 {
		t.Fatalf("rebuild: %v %s %s\n%s", err, r1.ID, r2.ID, out)
	}
	_, out, _ = build(Options{Target: "a", NoCache: true})
	if strings.Contains(out, "Using cache") {
		t.Errorf("--no-cache used the cache:\n%s", out)
	}
	if _, _, err := build(Options{Target: "nope"}); err == nil {
		t.Error("unknown target accepted")
	}
	_, _, err = build(Options{})
	if err == nil || !strings.Contains(err.Error(), "The command '/bin/sh -c fail' returned a non-zero code: 2") {
		t.Errorf("failing RUN: %v", err)
	}
	// A build arg changes RUN's key only once declared.
	dir2 := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nARG Z\nRUN true\n"})
	_, err = b.Build(context.Background(), Options{ContextDir: dir2, BuildArgs: map[string]*string{"Z": strp("1")}})
	if err != nil {
		t.Fatal(err)
	}
	var out2 bytes.Buffer
	_, err = b.Build(context.Background(), Options{ContextDir: dir2, BuildArgs: map[string]*string{"Z": strp("2")}, Out: &out2})
	if err != nil || !strings.Contains(out2.String(), "Running in") {
		t.Errorf("changed build arg was cached: %v\n%s", err, out2.String())
	}
	var q bytes.Buffer
	r, err := b.Build(context.Background(), Options{ContextDir: dir2, Quiet: true, Out: &q, BuildArgs: map[string]*string{"Z": strp("2")}})
	if err != nil || q.String() != r.ID+"\n" {
		t.Errorf("quiet output %q (%v)", q.String(), err)
	}
}

func TestCacheKey(t *testing.T) {
	cfg := dockerspec.DockerOCIImageConfig{}
	cfg.Env = []string{"A=1"}
	k := cacheKey("p", "cmd", cfg, "")
	if k != cacheKey("p", "cmd", cfg, "") {
		t.Fatal("not deterministic")
	}
	cfg2 := cfg
	cfg2.Env = []string{"A=2"}
	for _, other := range []string{cacheKey("q", "cmd", cfg, ""), cacheKey("p", "cmd2", cfg, ""), cacheKey("p", "cmd", cfg2, ""), cacheKey("p", "cmd", cfg, "x")} {
		if other == k {
			t.Error("key collision")
		}
	}
}

func TestChecksum(t *testing.T) {
	dir := writeCtx(t, map[string]string{"a": "1", "d/b": "2"})
	sum := func() string {
		srcs, err := resolveSources(dir, []string{"a", "d"})
		if err != nil {
			t.Fatal(err)
		}
		s, err := checksum(srcs)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s1 := sum()
	if !strings.HasPrefix(s1, "multi:") {
		t.Fatal(s1)
	}
	// Times do not matter; content and mode do.
	if err := os.Chtimes(filepath.Join(dir, "a"), time.Now(), time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	if sum() != s1 {
		t.Error("mtime changed the checksum")
	}
	if err := os.WriteFile(filepath.Join(dir, "d/b"), []byte("3"), 0o644); err != nil {
		t.Fatal(err)
	}
	s2 := sum()
	if s2 == s1 {
		t.Error("content change not seen")
	}
	if err := os.Chmod(filepath.Join(dir, "a"), 0o600); err != nil {
		t.Fatal(err)
	}
	if sum() == s2 {
		t.Error("mode change not seen")
	}
}

func TestResolveSourcesConfined(t *testing.T) {
	dir := writeCtx(t, map[string]string{"x.txt": "x", "y.txt": "y", "sub/z.txt": "z"})
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "leak")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(dir, "etcdir")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"leak", "etcdir/passwd", "../../../etc/passwd", "/etc/passwd"} {
		if _, err := resolveSources(dir, []string{p}); err == nil {
			t.Errorf("%s resolved outside the context", p)
		}
	}
	srcs, err := resolveSources(dir, []string{"*.txt"})
	if err != nil || len(srcs) != 2 {
		t.Fatalf("glob: %v %v", srcs, err)
	}
	if _, err := resolveSources(dir, []string{"http://example.com/x"}); err == nil {
		t.Error("URL accepted")
	}
	if _, err := resolveSources(dir, []string{"*.nope"}); err == nil {
		t.Error("empty glob accepted")
	}
}

func TestCopyInto(t *testing.T) {
	testutil.RequireRoot(t)
	f := newFake(t)
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	_ = tw.WriteHeader(&tar.Header{Name: "in/tar.txt", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("ok"))
	_ = tw.Close()
	dir := writeCtx(t, map[string]string{
		"Dockerfile": "FROM busybox\nWORKDIR /w\nCOPY --chmod=600 --chown=5:6 f.txt rel/\nCOPY d /dd\nADD a.tar /x/\nCOPY f.txt /renamed\n",
		"f.txt":      "f", "d/g.txt": "g", "a.tar": tarBuf.String(),
	})
	res, err := New(f, nil).Build(context.Background(), Options{ContextDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_ = res
	var roots []string
	for _, r := range f.roots {
		roots = append(roots, r)
	}
	find := func(p string) os.FileInfo {
		for _, r := range roots {
			if fi, err := os.Stat(filepath.Join(r, p)); err == nil {
				return fi
			}
		}
		t.Errorf("%s not copied", p)
		return nil
	}
	if fi := find("w/rel/f.txt"); fi != nil && fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	find("dd/g.txt")
	find("x/in/tar.txt")
	if fi := find("renamed"); fi != nil && fi.IsDir() {
		t.Error("renamed is a dir")
	}
}

func TestDockerignoreAndWriteContext(t *testing.T) {
	dir := writeCtx(t, map[string]string{"Dockerfile": "x", "keep": "k", "skip/a": "a", "skip/keep.md": "b", "b.log": "l", ".dockerignore": "skip\n!skip/*.md\n*.log\n"})
	pats, err := ReadDockerignore(dir)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteContext(context.Background(), &buf, dir, pats, map[string][]byte{".dockerfile.x": []byte("FROM x")}, "Dockerfile", ".dockerignore"); err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	got := strings.Join(names, ",")
	if strings.Contains(got, "b.log") || strings.Contains(got, "skip/a") || !strings.Contains(got, "skip/keep.md") || !strings.Contains(got, ".dockerfile.x") || !strings.Contains(got, "keep") {
		t.Errorf("context entries: %s", got)
	}
	if err := ApplyDockerignore(dir, pats); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{"skip/a": false, "b.log": false, "skip/keep.md": true, "keep": true} {
		if _, err := os.Stat(filepath.Join(dir, p)); (err == nil) != want {
			t.Errorf("%s exists=%v", p, err == nil)
		}
	}
}

func TestPrepareContextBareDockerfile(t *testing.T) {
	dir := t.TempDir()
	if err := PrepareContext(context.Background(), strings.NewReader("FROM busybox\n"), dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "Dockerfile")); err != nil || string(b) != "FROM busybox\n" {
		t.Fatalf("%q %v", b, err)
	}
}

func FuzzParseDockerfile(f *testing.F) {
	for _, s := range []string{
		"FROM busybox\nRUN echo hi\n",
		"# escape=`\nFROM scratch AS x\nCOPY --from=0 --chown=1:2 a b\n",
		"ARG A=1\nFROM ${A}\nENV X=$A Y=\"z z\"\nLABEL a=b\nHEALTHCHECK --interval=1s CMD true\n",
		"FROM a\nONBUILD RUN x\nSHELL [\"sh\",\"-c\"]\nEXPOSE 80/tcp\nCMD [\"x\"\n",
		"FROM a\nRUN <<EOF\nhi\nEOF\n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		df, err := ParseDockerfile(strings.NewReader(s))
		if err == nil && len(df.Stages) == 0 {
			t.Fatal("no stages without error")
		}
	})
}
