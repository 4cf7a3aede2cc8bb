package e2e

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// classicDocker runs the docker CLI with the classic builder (DOCKER_BUILDKIT=0).
func (d *daemon) classicDocker(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	path, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("skipping: the docker CLI is not installed")
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+d.host, "DOCKER_CONFIG="+dockerConfig(t), "DOCKER_CONTEXT=", "DOCKER_CLI_HINTS=false", "DOCKER_BUILDKIT=0")
	return runCmd(t, cmd, stdin)
}

const e2eDockerfile = `FROM busybox AS build
ARG WHO=nobody
WORKDIR /work
COPY *.txt ./
RUN cat greeting.txt name.txt > hello && echo "by $WHO" >> hello

FROM busybox
COPY --from=build /work/hello /hello
CMD ["cat", "/hello"]
`

// The runs use --network none so that this test does not depend on the default network.
func TestDockerBuildClassic(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	d.importBusybox(t, "busybox:latest", "-c", `CMD ["sh"]`)
	dir := t.TempDir()
	for name, body := range map[string]string{
		"Dockerfile": e2eDockerfile, "greeting.txt": "hello ", "name.txt": "world\n",
		"ignored.txt": "secret\n", ".dockerignore": "ignored.txt\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := d.classicDocker(t, nil, "build", "-t", "x", "--build-arg", "WHO=e2e", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "Successfully tagged x:latest") || !strings.Contains(r.stdout, "Step 1/8 : FROM busybox AS build") {
		t.Fatalf("docker build: %s", r)
	}
	if out := d.mustDocker(t, nil, "run", "--rm", "--network", "none", "x"); out != "hello world\nby e2e\n" {
		t.Fatalf("docker run x = %q", out)
	}
	// Rebuild: every step after each FROM comes from the cache.
	r = d.classicDocker(t, nil, "build", "-t", "x", "--build-arg", "WHO=e2e", dir)
	if r.code != 0 || strings.Count(r.stdout, "Using cache") != 6 {
		t.Fatalf("cached rebuild: %s", r)
	}
	if out := d.mustDocker(t, nil, "history", "--no-trunc", "--format", "{{.CreatedBy}}", "x"); !strings.Contains(out, "COPY file:") || !strings.Contains(out, "#(nop)  CMD") && !strings.Contains(out, "#(nop) ") {
		t.Errorf("history: %q", out)
	}
	// The context as a tar on stdin, for both CLIs.
	tarball, err := exec.Command("tar", "-C", dir, "-cf", "-", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	d.mustBerth(t, bytes.NewReader(tarball), "build", "-t", "w", "--build-arg", "WHO=tar", "-")
	if r := d.classicDocker(t, bytes.NewReader(tarball), "build", "-t", "w2", "--build-arg", "WHO=tar", "-"); r.code != 0 || !strings.Contains(r.stdout, "Using cache") {
		t.Fatalf("docker build - < tar: %s", r)
	}
	if out := d.mustDocker(t, nil, "run", "--rm", "--network", "none", "w2"); out != "hello world\nby tar\n" {
		t.Fatalf("docker run w2 = %q", out)
	}
	// A failing step ends the build with docker's message and exit code 1.
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\nRUN exit 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := d.classicDocker(t, nil, "build", dir); r.code == 0 || !strings.Contains(r.stderr+r.stdout, "returned a non-zero code: 7") {
		t.Errorf("failing build: %s", r)
	}
	// berth build: Dockerfile on stdin with a directory context, and a bare Dockerfile as context.
	df := "FROM busybox\nCOPY name.txt /\nCMD [\"cat\", \"/name.txt\"]\n"
	d.mustBerth(t, strings.NewReader(df), "build", "-q", "-t", "y", "-f", "-", dir)
	if out := d.mustBerth(t, nil, "run", "--rm", "--network", "none", "y"); out != "world\n" {
		t.Errorf("berth run y = %q", out)
	}
	out := d.mustBerth(t, strings.NewReader("FROM busybox\nCMD [\"echo\", \"bare\"]\n"), "build", "-t", "z", "-")
	if !strings.Contains(out, "Successfully tagged z:latest") {
		t.Errorf("berth build -: %q", out)
	}
	if out := d.mustDocker(t, nil, "run", "--rm", "--network", "none", "z"); out != "bare\n" {
		t.Errorf("run z = %q", out)
	}
}
