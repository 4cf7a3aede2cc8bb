package ocicmd

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/runtime/linux"
	"github.com/berth-dev/berth/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestFilterPs(t *testing.T) {
	var b bytes.Buffer
	out := "UID PID PPID CMD\nroot 1 0 init\nroot 42 1 sh\nroot 420 1 x\n"
	if err := filterPs(&b, out, []int{42}); err != nil {
		t.Fatal(err)
	}
	if b.String() != "UID PID PPID CMD\nroot 42 1 sh\n" {
		t.Fatalf("got %q", b.String())
	}
	if err := filterPs(&b, "no header\n", nil); err == nil {
		t.Fatal("missing PID column accepted")
	}
}

func TestParseUser(t *testing.T) {
	u, err := parseUser("1000:100")
	if err != nil || u.UID != 1000 || u.GID != 100 {
		t.Fatalf("parseUser = %+v, %v", u, err)
	}
	for _, bad := range []string{"", "root", "1:x", "-1"} {
		if _, err := parseUser(bad); err == nil {
			t.Errorf("parseUser(%q) accepted", bad)
		}
	}
}

// TestCLILifecycle drives the built binary like runtime-tools drives runc.
func TestCLILifecycle(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireBusybox(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "berth")
	build := exec.Command("go", "build", "-o", bin, "github.com/berth-dev/berth/internal/runtime/linux/internal/testbin")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	bundle := filepath.Join(dir, "bundle")
	testutil.BusyboxRootfs(t, filepath.Join(bundle, "rootfs"))
	sp := linux.DefaultSpec("rootfs", []string{"sh", "-c", "echo out; sleep 60"})
	sp.Linux.CgroupsPath = "berth-clitest-" + filepath.Base(dir)
	b, _ := json.Marshal(sp)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "state")
	oci := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"oci", "--root", root, "--log", filepath.Join(dir, "log.json"), "--log-format", "json"}, args...)...)
		// A file, not a pipe: the container init inherits the creator's stdio and would keep a
		// pipe open (and cmd.Run waiting) for the container's whole life.
		out, err := os.CreateTemp(dir, "out")
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		cmd.Stdout, cmd.Stderr = out, out
		err = cmd.Run()
		b, _ := os.ReadFile(out.Name())
		return string(b), err
	}
	t.Cleanup(func() { _, _ = oci("delete", "--force", "c1") })

	if out, err := oci("state", "nope"); err == nil || !strings.Contains(out, "does not exist") {
		t.Fatalf("state of unknown container: %v %q", err, out)
	}
	pidFile := filepath.Join(dir, "pid")
	if out, err := oci("create", "--bundle", bundle, "--pid-file", pidFile, "--no-pivot", "--no-new-keyring", "c1"); err != nil {
		t.Fatalf("create: %v %s", err, out)
	}
	state := func() specs.State {
		out, err := oci("state", "c1")
		if err != nil {
			t.Fatalf("state: %v %s", err, out)
		}
		var st specs.State
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("state json: %v %q", err, out)
		}
		return st
	}
	if st := state(); st.Status != specs.StateCreated || st.Pid == 0 {
		t.Fatalf("after create: %+v", st)
	}
	if pid, _ := os.ReadFile(pidFile); len(pid) == 0 {
		t.Fatal("pid file empty")
	}
	if out, err := oci("start", "c1"); err != nil {
		t.Fatalf("start: %v %s", err, out)
	}
	if st := state(); st.Status != specs.StateRunning {
		t.Fatalf("after start: %+v", st)
	}
	if out, err := oci("exec", "c1", "sh", "-c", "exit 5"); err == nil || !strings.Contains(err.Error(), "exit status 5") {
		t.Fatalf("exec exit code: %v %s", err, out)
	}
	if out, err := oci("delete", "c1"); err == nil || !strings.Contains(out, "not stopped") {
		t.Fatalf("delete of running container: %v %s", err, out)
	}
	if out, err := oci("kill", "c1", "KILL"); err != nil {
		t.Fatalf("kill: %v %s", err, out)
	}
	// The init is not our child (its creator exited); wait for the kernel to report it gone.
	for i := 0; i < 1000 && state().Status != specs.StateStopped; i++ {
		if _, err := oci("state", "c1"); err != nil {
			break
		}
	}
	if out, err := oci("delete", "c1"); err != nil {
		t.Fatalf("delete: %v %s", err, out)
	}
	if out, err := oci("features"); err != nil || !strings.Contains(out, "ociVersionMax") {
		t.Fatalf("features: %v %s", err, out)
	}
}
