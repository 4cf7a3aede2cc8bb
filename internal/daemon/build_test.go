package daemon

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"github.com/ulikunitz/xz"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/api"
	"github.com/berth-dev/berth/internal/snapshot"
	mcontainer "github.com/moby/moby/api/types/container"
)

// ctxFile is one entry of a test build context; a non-empty link makes a symlink.
type ctxFile struct {
	name, body, link string
}

func contextTar(t *testing.T, files []ctxFile) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}
		if f.link != "" {
			hdr = &tar.Header{Name: f.name, Mode: 0o777, Linkname: f.link, Typeflag: tar.TypeSymlink}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if f.link == "" {
			if _, err := tw.Write([]byte(f.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func doBuild(t *testing.T, d *Daemon, opts api.BuildOptions, files []ctxFile) (string, string, error) {
	t.Helper()
	var out bytes.Buffer
	id, err := d.Build(context.Background(), opts, contextTar(t, files), &out)
	return id, out.String(), err
}

const multiStage = `FROM busybox AS build
ARG GREETING=hello
ENV TARGET=world
WORKDIR /src
COPY msg.txt ./
COPY data/ /src/data/
RUN echo "$GREETING $TARGET $(cat msg.txt)" > out.txt && cat data/*.txt >> out.txt
RUN echo "app:x:1234:1234::/home/app:/bin/sh" >> /etc/passwd

FROM busybox
COPY --from=build /src/out.txt /app/
COPY --from=build --chown=1234:1234 /etc/passwd /app/passwd
WORKDIR /app
USER 1234
RUN id -u > /tmp/uid.txt
CMD ["cat", "/app/out.txt"]
`

func TestBuildMultiStageCache(t *testing.T) {
	d := newTestDaemon(t)
	files := []ctxFile{
		{name: "Dockerfile", body: multiStage},
		{name: "msg.txt", body: "from-context"},
		{name: "data/a.txt", body: "A\n"},
		{name: "data/b.txt", body: "B\n"},
		{name: "secret.txt", body: "nope"},
		{name: ".dockerignore", body: "secret.txt\n"},
	}
	opts := api.BuildOptions{Tags: []string{"built:1"}, BuildArgs: map[string]*string{"GREETING": ptrTo("hi")}}
	id, out, err := doBuild(t, d, opts, files)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, want := range []string{"Step 1/15 : FROM busybox AS build", " ---> Running in ", "Removing intermediate container", "Successfully built " + id[7:19], "Successfully tagged built:1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	_, code, logs := run(t, d, &mcontainer.Config{Image: "built:1"}, nil)
	if code != 0 || logs != "hi world from-context\nA\nB\n" {
		t.Fatalf("run: code %d, output %q", code, logs)
	}
	_, _, logs = run(t, d, &mcontainer.Config{Image: "built:1", Entrypoint: []string{"sh", "-c", "pwd; cat /tmp/uid.txt; stat -c %u /app/passwd"}}, nil)
	if logs != "/app\n1234\n1234\n" {
		t.Fatalf("workdir/user: %q", logs)
	}

	// No change: every step after FROM is cached and the same image comes out.
	id2, out, err := doBuild(t, d, opts, files)
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	if id2 != id || strings.Contains(out, "Running in") {
		t.Fatalf("rebuild was not fully cached (%s vs %s):\n%s", id2, id, out)
	}
	if n := strings.Count(out, "Using cache"); n != 13 {
		t.Fatalf("%d steps cached, want 13:\n%s", n, out)
	}

	// Change data/b.txt: steps up to COPY msg.txt stay cached, the rest of stage 1 reruns.
	files[3].body = "B2\n"
	_, out, err = doBuild(t, d, opts, files)
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	steps := stepResults(out)
	for i, cached := range steps {
		// Steps 2-5 (ARG, ENV, WORKDIR, COPY msg.txt) are cached; 6-8 rebuild; stage 2's FROM
		// is step 9 and its COPY --from sees a new out.txt, so everything after rebuilds too,
		// except COPY of /etc/passwd whose content did not change... but its parent did.
		want := i+1 >= 2 && i+1 <= 5
		if i+1 == 1 || i+1 == 9 {
			continue
		}
		if cached != want {
			t.Errorf("step %d cached=%v, want %v:\n%s", i+1, cached, want, out)
		}
	}
	_, _, logs = run(t, d, &mcontainer.Config{Image: "built:1"}, nil)
	if logs != "hi world from-context\nA\nB2\n" {
		t.Fatalf("after change: %q", logs)
	}
	// Nothing of the builds remains: no context or mount directory, no build snapshot, no
	// RUN container.
	if ents, _ := os.ReadDir(filepath.Join(d.cfg.Root, "build")); len(ents) != 0 {
		t.Errorf("build directory not empty: %v", ents)
	}
	_ = d.snap.Walk(context.Background(), func(_ context.Context, info snapshot.Info) error {
		if _, ok := info.Labels[buildLabel]; ok {
			t.Errorf("build snapshot left: %s", info.Name)
		}
		return nil
	})
	for _, c := range d.ctrs.all() {
		if _, ok := c.snapshotOf().Config.Labels[buildLabel]; ok {
			t.Errorf("RUN container left: %s", c.snapshotOf().ID)
		}
	}
}

// stepResults reports, per step, whether it used the cache.
func stepResults(out string) []bool {
	parts := regexp.MustCompile(`(?m)^Step \d+/\d+ : `).Split(out, -1)[1:]
	res := make([]bool, len(parts))
	for i, p := range parts {
		res[i] = strings.Contains(p, "Using cache")
	}
	return res
}

func TestBuildDockerignoreAndSymlinks(t *testing.T) {
	d := newTestDaemon(t)
	// A build snapshot of an earlier daemon process is removed by the next build.
	if _, err := d.snap.Prepare(context.Background(), "build-stale", "", map[string]string{buildLabel: "earlier"}); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(secret, []byte("host-only-content"), 0o644); err != nil {
		t.Fatal(err)
	}
	files := []ctxFile{
		{name: "Dockerfile", body: "FROM busybox\nCOPY . /ctx/\nCMD [\"sh\", \"-c\", \"ls -a /ctx; cat /ctx/link 2>&1 | head -c 200\"]\n"},
		{name: "keep.txt", body: "keep"},
		{name: "ignored.txt", body: "ignored"},
		{name: "link", link: secret},
		{name: "dirlink", link: filepath.Dir(secret)},
		{name: ".dockerignore", body: "ignored.txt\n"},
	}
	_, out, err := doBuild(t, d, api.BuildOptions{Tags: []string{"ign"}}, files)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	_, _, logs := run(t, d, &mcontainer.Config{Image: "ign"}, nil)
	if strings.Contains(logs, "ignored.txt") || !strings.Contains(logs, "keep.txt") {
		t.Fatalf(".dockerignore not applied: %q", logs)
	}
	if strings.Contains(logs, "host-only-content") {
		t.Fatalf("host file leaked: %q", logs)
	}
	if _, err := d.snap.Stat(context.Background(), "build-stale"); err == nil {
		t.Error("stale build snapshot not removed")
	}

	// A symlink named as a source resolves inside the context: /etc/passwd is not there.
	files[0].body = "FROM busybox\nCOPY link /leak\n"
	if _, out, err := doBuild(t, d, api.BuildOptions{}, files); err == nil {
		t.Fatalf("COPY of a link out of the context succeeded:\n%s", out)
	}
	files[0].body = "FROM busybox\nCOPY dirlink/host-secret /leak\n"
	if _, out, err := doBuild(t, d, api.BuildOptions{}, files); err == nil {
		t.Fatalf("COPY through a directory link out of the context succeeded:\n%s", out)
	}
	files[0].body = "FROM busybox\nCOPY ignored.txt /x\n"
	if _, out, err := doBuild(t, d, api.BuildOptions{}, files); err == nil {
		t.Fatalf("COPY of an ignored file succeeded:\n%s", out)
	}
}

func TestBuildMetadataAndOnbuild(t *testing.T) {
	d := newTestDaemon(t)
	df := `FROM busybox
LABEL a=b
EXPOSE 80 53/udp
ENV X=1 Y="two words"
VOLUME /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s CMD true
ENTRYPOINT ["/bin/echo"]
CMD ["default"]
ONBUILD RUN echo triggered > /trig
`
	id, out, err := doBuild(t, d, api.BuildOptions{Tags: []string{"base"}, Labels: map[string]string{"extra": "1"}}, []ctxFile{{name: "Dockerfile", body: df}})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ii, err := d.images.ImageInspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	c := ii.Config
	if c.Labels["a"] != "b" || c.Labels["extra"] != "1" || len(c.ExposedPorts) != 2 || c.StopSignal != "SIGTERM" ||
		c.Healthcheck == nil || len(c.OnBuild) != 1 || c.Volumes == nil || strings.Join(c.Cmd, ",") != "default" {
		t.Fatalf("config: %+v", c)
	}
	hist, err := d.images.ImageHistory(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(hist[1].CreatedBy, "#(nop)") || !strings.Contains(hist[1].CreatedBy, "ONBUILD") {
		t.Fatalf("history: %+v", hist)
	}
	_, out, err = doBuild(t, d, api.BuildOptions{Tags: []string{"child"}}, []ctxFile{{name: "Dockerfile", body: "FROM base\nENTRYPOINT []\nCMD [\"cat\", \"/trig\"]\n"}})
	if err != nil || !strings.Contains(out, "Executing 1 build trigger") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	_, code, logs := run(t, d, &mcontainer.Config{Image: "child"}, nil)
	if code != 0 || logs != "triggered\n" {
		t.Fatalf("child run: %d %q", code, logs)
	}
	// A failing RUN reports Docker's message.
	_, _, err = doBuild(t, d, api.BuildOptions{}, []ctxFile{{name: "Dockerfile", body: "FROM busybox\nRUN exit 3\n"}})
	if err == nil || !strings.Contains(err.Error(), "returned a non-zero code: 3") {
		t.Fatalf("failing RUN: %v", err)
	}
}

// TestBuildScratchAddChown: ADD unpacks a gzip tar, --chown resolves names in the image, RUN
// runs as USER, and a scratch stage gets its files from another stage.
func TestBuildScratchAddChown(t *testing.T) {
	d := newTestDaemon(t)
	var tgz bytes.Buffer
	gz := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(gz)
	_ = tw.WriteHeader(&tar.Header{Name: "pkg/file", Mode: 0o644, Size: 3, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("pkg"))
	_ = tw.Close()
	_ = gz.Close()
	var txz bytes.Buffer
	xw, err := xz.NewWriter(&txz)
	if err != nil {
		t.Fatal(err)
	}
	tw = tar.NewWriter(xw)
	_ = tw.WriteHeader(&tar.Header{Name: "xzfile", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("xz"))
	_ = tw.Close()
	_ = xw.Close()
	df := `FROM busybox AS tools
RUN echo "svc:x:700:701::/:/bin/sh" >> /etc/passwd && echo "grp:x:702:" >> /etc/group
ADD p.tgz /opt/
ADD p.txz /opt/
RUN [ "$(cat /opt/xzfile)" = "xz" ]
COPY --chown=svc:grp f.txt /owned/
RUN [ "$(stat -c %u:%g /owned/f.txt)" = "700:702" ]
USER svc
RUN id -u > /tmp/me

FROM scratch
COPY --from=tools /bin/busybox /bin/sh
COPY --from=tools /opt/pkg/file /tmp/me /owned/f.txt /out/
CMD ["/bin/sh", "-c", "read a < /out/file; read b < /out/me; read c < /out/f.txt; echo $a $b $c"]
`
	_, out, err := doBuild(t, d, api.BuildOptions{Tags: []string{"scr"}}, []ctxFile{{name: "Dockerfile", body: df}, {name: "p.tgz", body: tgz.String()}, {name: "p.txz", body: txz.String()}, {name: "f.txt", body: "F"}})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	_, code, logs := run(t, d, &mcontainer.Config{Image: "scr"}, nil)
	if code != 0 || logs != "pkg 700 F\n" {
		t.Fatalf("run: %d %q\n%s", code, logs, out)
	}
	ii, err := d.images.ImageInspect(context.Background(), "scr")
	if err != nil || len(ii.RootFS.Layers) != 2 {
		t.Fatalf("scratch image layers: %v %v", ii.RootFS.Layers, err)
	}
}
