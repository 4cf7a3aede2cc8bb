package cli

import (
	"bytes"
	"context"
	"fmt"
	"github.com/spf13/cobra"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/api"
	"github.com/berth-dev/berth/internal/events"
	"github.com/containerd/errdefs"
	eventtypes "github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/system"
)

// fakeImages is a tiny in-memory image backend: enough to drive the CLI through the real API
// server and client.
type fakeImages struct {
	tags    map[string]string // name:tag -> ID
	imports []string
	changes []string
}

const fakeID = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

func (f *fakeImages) resolve(ref string) (string, error) {
	if id, ok := f.tags[ref]; ok {
		return id, nil
	}
	if id, ok := f.tags[ref+":latest"]; ok {
		return id, nil
	}
	if strings.HasPrefix(fakeID, "sha256:"+ref) || ref == fakeID {
		return fakeID, nil
	}
	return "", fmt.Errorf("No such image: %s: %w", ref, errdefs.ErrNotFound)
}

func (f *fakeImages) ImageList(context.Context, bool, api.Filters) ([]image.Summary, error) {
	s := image.Summary{ID: fakeID, Created: time.Now().Add(-2 * time.Hour).Unix(), Size: 4_261_000, Containers: -1, SharedSize: -1}
	for name := range f.tags {
		s.RepoTags = append(s.RepoTags, name)
	}
	return []image.Summary{s}, nil
}

func (f *fakeImages) ImageInspect(_ context.Context, ref string) (image.InspectResponse, error) {
	id, err := f.resolve(ref)
	if err != nil {
		return image.InspectResponse{}, err
	}
	return image.InspectResponse{ID: id, Size: 4_261_000, Os: "linux"}, nil
}

func (f *fakeImages) ImageHistory(_ context.Context, ref string) ([]image.HistoryResponseItem, error) {
	id, err := f.resolve(ref)
	if err != nil {
		return nil, err
	}
	return []image.HistoryResponseItem{{ID: id, Created: time.Now().Unix(), CreatedBy: "import", Size: 5, Comment: "Imported from -"}}, nil
}

func (f *fakeImages) ImageTag(_ context.Context, source, repo, tag string) error {
	id, err := f.resolve(source)
	if err != nil {
		return err
	}
	f.tags[repo+":"+tag] = id
	return nil
}

func (f *fakeImages) ImageDelete(_ context.Context, ref string, _, _ bool) ([]image.DeleteResponse, error) {
	if _, err := f.resolve(ref); err != nil {
		return nil, err
	}
	if !strings.Contains(ref, ":") {
		ref += ":latest"
	}
	delete(f.tags, ref)
	return []image.DeleteResponse{{Untagged: ref}}, nil
}

func (f *fakeImages) ImagePrune(context.Context, bool, api.Filters) (image.PruneReport, error) {
	return image.PruneReport{ImagesDeleted: []image.DeleteResponse{{Deleted: fakeID}}, SpaceReclaimed: 2048}, nil
}

func (f *fakeImages) ImageLoad(_ context.Context, r io.Reader, progress api.Progress) ([]string, error) {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, err
	}
	progress(jsonstream.Message{ID: "layer", Status: "Loading layer", Progress: &jsonstream.Progress{Current: 5, Total: 10}})
	return []string{"Loaded image: busybox:latest"}, nil
}

func (f *fakeImages) ImageSave(_ context.Context, refs []string, w io.Writer) error {
	for _, r := range refs {
		if _, err := f.resolve(r); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, "TARBALL")
	return err
}

func (f *fakeImages) ImageImport(_ context.Context, src io.Reader, ref string, changes []string, _ string, _ api.Progress) (string, error) {
	b, err := io.ReadAll(src)
	if err != nil {
		return "", err
	}
	f.imports = append(f.imports, string(b))
	f.changes = changes
	if ref != "" {
		f.tags[ref] = fakeID
	}
	return fakeID, nil
}

type fakeSystem struct{}

func (fakeSystem) Info(context.Context) (system.Info, error) {
	return system.Info{ID: "ID1", Images: 1, ServerVersion: "9.9.9", OSType: "linux", Driver: "overlay2", DockerRootDir: "/var/lib/berth"}, nil
}

type env struct {
	host string
	fi   *fakeImages
	bus  *events.Bus
}

func newEnv(t *testing.T) *env {
	t.Helper()
	fi := &fakeImages{tags: map[string]string{"busybox:latest": fakeID}}
	bus := events.New()
	srv := httptest.NewServer(api.New(api.Config{Images: fi, System: fakeSystem{}, Events: bus, Logger: slog.New(slog.DiscardHandler), Version: "9.9.9"}))
	t.Cleanup(srv.Close)
	return &env{host: "tcp://" + srv.Listener.Addr().String(), fi: fi, bus: bus}
}

// run runs the CLI with stdin and returns stdout, stderr and the exit code.
func (e *env) run(stdin string, args ...string) (string, string, int) {
	var out, errOut bytes.Buffer
	c := &cli{in: strings.NewReader(stdin), out: &out, err: &errOut}
	code := c.run(append([]string{"-H", e.host}, args...))
	return out.String(), errOut.String(), code
}

func TestCLIAgainstServer(t *testing.T) {
	e := newEnv(t)
	out, errOut, code := e.run("", "images")
	if code != 0 || !strings.HasPrefix(out, "REPOSITORY   TAG       IMAGE ID       CREATED       SIZE\nbusybox      latest    111111111111   2 hours ago   4.26MB\n") {
		t.Errorf("images: %d %q %q", code, out, errOut)
	}
	out, _, code = e.run("", "image", "ls", "-q", "--no-trunc")
	if code != 0 || out != fakeID+"\n" {
		t.Errorf("images -q: %d %q", code, out)
	}
	if _, errOut, code = e.run("", "tag", "busybox", "localhost:5000/a/b:v1"); code != 0 {
		t.Fatalf("tag: %d %s", code, errOut)
	}
	if e.fi.tags["localhost:5000/a/b:v1"] != fakeID {
		t.Errorf("tag not applied: %v", e.fi.tags)
	}
	out, _, code = e.run("", "image", "inspect", "-f", "{{.Id}} {{.Size}}", "localhost:5000/a/b:v1")
	if code != 0 || out != fakeID+" 4261000\n" {
		t.Errorf("inspect -f: %d %q", code, out)
	}
	// Untyped inspect tries a container, then an image; a miss is docker's "No such object".
	out, errOut, code = e.run("", "inspect", "busybox", "nope")
	if code != 1 || !strings.Contains(out, `"Id": "`+fakeID) || !strings.HasPrefix(out, "[\n    {") || !strings.Contains(errOut, "No such object: nope") {
		t.Errorf("inspect with a missing object: %d %q %q", code, out, errOut)
	}
	_, errOut, code = e.run("", "image", "inspect", "nope")
	if code != 1 || !strings.Contains(errOut, "No such image: nope") {
		t.Errorf("inspect with a missing image: %d %q %q", code, out, errOut)
	}
	out, _, code = e.run("", "history", "busybox")
	if code != 0 || !strings.HasPrefix(out, "IMAGE          CREATED") || !strings.Contains(out, "Imported from -") {
		t.Errorf("history: %d %q", code, out)
	}
	out, errOut, code = e.run("ROOTFS", "import", "-c", "CMD [\"sh\"]", "-c", "ENV A=b", "-", "imported:v2")
	if code != 0 || strings.TrimSpace(out) != fakeID || e.fi.imports[0] != "ROOTFS" || len(e.fi.changes) != 2 || e.fi.tags["imported:v2"] == "" {
		t.Errorf("import: %d %q %q %v", code, out, errOut, e.fi.changes)
	}
	out, errOut, code = e.run("TAR", "load")
	if code != 0 || out != "Loaded image: busybox:latest\n" {
		t.Errorf("load: %d %q %q", code, out, errOut)
	}
	dir := t.TempDir()
	if _, errOut, code = e.run("", "save", "-o", filepath.Join(dir, "x.tar"), "busybox"); code != 0 {
		t.Errorf("save: %d %s", code, errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "x.tar")); string(b) != "TARBALL" {
		t.Errorf("saved %q", b)
	}
	if _, errOut, code = e.run("", "save", "-o", filepath.Join(dir, "y.tar"), "nope"); code != 1 || !strings.Contains(errOut, "No such image: nope") {
		t.Errorf("save of a missing image: %d %s", code, errOut)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("save left files behind: %v", ents)
	}
	out, _, code = e.run("", "rmi", "imported:v2", "nope")
	if code != 1 || out != "Untagged: imported:v2\n" {
		t.Errorf("rmi: %d %q", code, out)
	}
	out, _, code = e.run("n\n", "image", "prune")
	if code != 1 || !strings.Contains(out, "WARNING! This will remove all dangling images.") {
		t.Errorf("prune cancelled: %d %q", code, out)
	}
	out, _, code = e.run("", "image", "prune", "-af")
	if code != 0 || out != "Deleted Images:\ndeleted: "+fakeID+"\n\nTotal reclaimed space: 2.048kB\n" {
		t.Errorf("prune: %d %q", code, out)
	}
	out, _, code = e.run("", "info", "--format", "{{.ServerVersion}} {{.Images}}")
	if code != 0 || out != "9.9.9 1\n" {
		t.Errorf("info --format: %d %q", code, out)
	}
	out, _, code = e.run("", "system", "info")
	if code != 0 || !strings.Contains(out, " Server Version: 9.9.9\n") || !strings.Contains(out, " Storage Driver: overlay2\n") {
		t.Errorf("info: %d %q", code, out)
	}
	out, _, code = e.run("", "version")
	if code != 0 || !strings.Contains(out, "Server: Berth Engine\n") || !strings.Contains(out, "  Version:          9.9.9\n") {
		t.Errorf("version: %d %q", code, out)
	}
	out, _, code = e.run("", "version", "--format", "{{.Server.APIVersion}}")
	if code != 0 || out != api.MaxAPIVersion+"\n" {
		t.Errorf("version --format: %d %q", code, out)
	}
}

func TestCLIEvents(t *testing.T) {
	e := newEnv(t)
	e.bus.Publish(eventtypes.ImageEventType, "tag", fakeID, map[string]string{"name": "busybox:latest"})
	e.bus.Publish(eventtypes.ImageEventType, "untag", fakeID, map[string]string{"name": "busybox:latest"})
	until := time.Now().Add(time.Millisecond)
	time.Sleep(2 * time.Millisecond) // until must be in the past for the stream to end by itself
	out, errOut, code := e.run("", "events", "--since", "1m", "--until", fmt.Sprint(until.Unix())+"."+fmt.Sprintf("%09d", until.Nanosecond()), "--filter", "event=tag")
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, " image tag "+fakeID+" (name=busybox:latest)") {
		t.Errorf("events: %d %q %q", code, out, errOut)
	}
	out, _, code = e.run("", "events", "--since", "1m", "--until", fmt.Sprint(until.Unix()+0)+"."+fmt.Sprintf("%09d", until.Nanosecond()), "--format", "{{.Action}} {{.Actor.Attributes.name}}")
	if code != 0 || out != "tag busybox:latest\nuntag busybox:latest\n" {
		t.Errorf("events --format: %d %q", code, out)
	}
}

func TestCLIErrors(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	host := "unix://" + filepath.Join(dir, "none.sock")
	c := &cli{in: strings.NewReader(""), out: &out, err: &errOut}
	if code := c.run([]string{"-H", host, "images"}); code != 1 || strings.TrimSpace(errOut.String()) != "Cannot connect to the berth daemon at "+host+". Is the daemon running?" {
		t.Errorf("unreachable: %d %q", code, errOut.String())
	}
	errOut.Reset()
	c = &cli{in: strings.NewReader(""), out: &out, err: &errOut}
	if code := c.run([]string{"images", "--nope"}); code != exitUsage || !strings.Contains(errOut.String(), "unknown flag: --nope") {
		t.Errorf("bad flag: %d %q", code, errOut.String())
	}
	errOut.Reset()
	c = &cli{in: strings.NewReader(""), out: &out, err: &errOut}
	if code := c.run([]string{"tag", "a"}); code != 1 || !strings.Contains(errOut.String(), `"berth tag" requires exactly 2 arguments.`) {
		t.Errorf("bad args: %d %q", code, errOut.String())
	}
	errOut.Reset()
	c = &cli{in: strings.NewReader(""), out: &out, err: &errOut}
	if code := c.run([]string{"rn"}); code != 1 || !strings.Contains(errOut.String(), "'rn' is not a berth command") || !strings.Contains(errOut.String(), "run") {
		t.Errorf("unknown command: %d %q", code, errOut.String())
	}
	// A filter without "=" is refused before any request, as docker does, by every list command.
	for _, args := range [][]string{{"network", "ls", "--filter", "driver"}, {"network", "prune", "-f", "--filter", "until"}, {"images", "--filter", "dangling"}} {
		errOut.Reset()
		c = &cli{in: strings.NewReader(""), out: &out, err: &errOut}
		if code := c.run(append([]string{"-H", host}, args...)); code == 0 || !strings.Contains(errOut.String(), "bad format of filter (expected name=value)") {
			t.Errorf("%v: %d %q", args, code, errOut.String())
		}
	}
}

// Every command must build its flag set without conflicts (cobra panics at run time otherwise).
func TestCommandFlagSetsBuild(t *testing.T) {
	c := &cli{in: strings.NewReader(""), out: io.Discard, err: io.Discard}
	root := c.newRootCommand()
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		cmd.InitDefaultHelpFlag()
		_ = cmd.Flags()
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
