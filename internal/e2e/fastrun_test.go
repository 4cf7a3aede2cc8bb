package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// berthEnv runs the berth CLI against d through BERTH_HOST, with extra environment.
func (d *daemon) berthEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(berthBin, args...)
	cmd.Env = append(append(os.Environ(), "BERTH_HOST="+d.host), env...)
	return runCmd(t, cmd, nil)
}

// TestFastRun: `berth run` in its C client (fastrun.c) and in the Go client (BERTH_FASTRUN=0)
// print the same, exit the same and make the same container.
func TestFastRun(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	d.importBusybox(t, "busybox:latest")
	goClient := []string{"BERTH_FASTRUN=0"}

	for _, args := range [][]string{
		{"run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo out; echo err >&2; echo out2; exit 3"},
		{"run", "--rm", "--network", "none", "busybox", "sh", "-c", "seq 1 100000; seq 1 50000 >&2"},
		{"run", "--rm", "--network", "none", "busybox", "nosuchcmd"},
		{"run", "--rm", "--network", "none", "nosuchimage", "true"},
		{"run", "--rm", "--network", "nosuchnet", "busybox", "true"},
		{"run", "--rm", "--network", "none", "-e", "A=1", "-w", "/tmp", "-u", "nobody", "--entrypoint", "sh", "busybox", "-c", "echo $A $(pwd) $(id -u)"},
		{"run", "--rm", "--network", "none", "--name", "bad name", "busybox", "true"},
	} {
		fast, slow := d.berthEnv(t, nil, args...), d.berthEnv(t, goClient, args...)
		if fast != slow {
			t.Errorf("berth %q\nC client: %s\nGo client: %s", args, fast, slow)
		}
	}
	// The real daemon's answers and exit codes, in the C client.
	if r := d.berthEnv(t, nil, "run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo hi; exit 7"); r.code != 7 || r.stdout != "hi\n" {
		t.Errorf("exit status: %s", r)
	}
	if r := d.berthEnv(t, nil, "run", "--rm", "--network", "none", "busybox", "nosuchcmd"); r.code != 127 || !strings.Contains(r.stderr, "Error response from daemon:") {
		t.Errorf("start failure: %s", r)
	}
	// -H before the verb takes the C client too; -d prints the ID.
	r := runCmd(t, exec.Command(berthBin, "-H", d.host, "run", "-d", "--rm", "--network", "none", "busybox", "sleep", "60"), nil)
	if id := strings.TrimSpace(r.stdout); r.code != 0 || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) {
		t.Fatalf("run -d: %s", r)
	} else if st := strings.TrimSpace(d.mustBerth(t, nil, "inspect", "-f", "{{.State.Status}} {{.Config.AttachStdout}}", id)); st != "running false" {
		t.Errorf("run -d: %q", st)
	} else {
		d.mustBerth(t, nil, "rm", "-f", id)
	}

	// With its standard output closed the client must not hand the container's output to the
	// daemon (the next connection would take descriptor 1).
	body := `{"Image":"busybox","Cmd":["true"]}`
	req := fmt.Sprintf(`printf 'POST /v1.51/containers/create?name=pwned HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s'`, len(body), body)
	closed := exec.Command("sh", "-c", `exec "$0" "$@" >&-`, berthBin, "run", "--rm", "--network", "none", "busybox", "sh", "-c", req)
	closed.Env = append(os.Environ(), "BERTH_HOST="+d.host)
	if r := runCmd(t, closed, nil); r.code != 0 {
		t.Errorf("run with stdout closed: %s", r)
	}
	if r := d.berth(t, nil, "inspect", "pwned"); r.code == 0 {
		t.Fatal("the container's output reached the daemon as a request")
	}

	// The same command line makes the same container in both clients.
	args := []string{"--network", "none", "-e", "A=1", "-l", "k=v", "--init", "--read-only", "busybox", "true"}
	d.berthEnv(t, nil, append([]string{"run", "--name", "fast"}, args...)...)
	d.berthEnv(t, goClient, append([]string{"run", "--name", "slow"}, args...)...)
	var got [2]map[string]any
	for i, name := range []string{"fast", "slow"} {
		var v []map[string]any
		if err := json.Unmarshal([]byte(d.mustBerth(t, nil, "inspect", name)), &v); err != nil || len(v) != 1 {
			t.Fatalf("inspect %s: %v", name, err)
		}
		got[i] = map[string]any{"Config": v[0]["Config"], "HostConfig": v[0]["HostConfig"], "Path": v[0]["Path"], "Args": v[0]["Args"]}
		delete(got[i]["Config"].(map[string]any), "Hostname") // the ID's prefix
	}
	if !reflect.DeepEqual(got[0], got[1]) {
		a, _ := json.Marshal(got[0])
		b, _ := json.Marshal(got[1])
		t.Errorf("C client's container:\n%s\nGo client's:\n%s", a, b)
	}
	d.mustBerth(t, nil, "rm", "fast", "slow")
	if out := d.mustBerth(t, nil, "ps", "-aq"); out != "" {
		t.Errorf("containers left: %q", out)
	}
}

// waitSpares waits until the daemon keeps a recycled container directory and snapshot.
func (d *daemon) waitSpares(t *testing.T) {
	t.Helper()
	for i := 0; ; i++ {
		c, _ := filepath.Glob(filepath.Join(d.root, "containers", "spare-*"))
		s, _ := filepath.Glob(filepath.Join(d.root, "snapshots", "spare-*"))
		if len(c) > 0 && len(s) > 0 {
			return
		}
		if i == 100 {
			t.Fatalf("no recycled directories after a removal: %q %q", c, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRecycledDirs: a container made in a removed one's recycled directories sees none of its
// files, output or /etc contents.
func TestRecycledDirs(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	d.importBusybox(t, "busybox:latest")
	d.mustBerth(t, nil, "run", "--rm", "--network", "none", "--hostname", "first", "--add-host", "old:10.9.9.9", "busybox",
		"sh", "-c", "echo secret-output; echo x > /leak; mkdir -p /d/e; echo x > /etc/hosts; chmod 666 /etc/resolv.conf; chown 1:1 /etc/hostname; chmod 777 /")
	d.waitSpares(t)
	out := d.mustBerth(t, nil, "run", "--name", "second", "--network", "none", "busybox", "sh", "-c",
		"ls /leak /d 2>&1; cat /etc/hostname /etc/hosts; stat -c '%a %u' /etc/resolv.conf /etc/hostname /")
	id := strings.TrimSpace(d.mustBerth(t, nil, "inspect", "-f", "{{.Id}}", "second"))
	if strings.Contains(out, "secret") || strings.Contains(out, "old") || strings.Contains(out, "first") || !strings.Contains(out, id[:12]) ||
		strings.Count(out, "No such file") != 2 || !strings.Contains(out, "localhost") || !strings.HasSuffix(out, "644 0\n644 0\n755 0\n") {
		t.Errorf("second container sees the first's leftovers:\n%s", out)
	}
	if logs := d.mustBerth(t, nil, "logs", "second"); logs != out {
		t.Errorf("logs of the second container = %q, want its own output %q", logs, out)
	}
	d.mustBerth(t, nil, "rm", "second")
}

// TestSigProxy: `run` without a TTY forwards the signals it receives to the container and
// exits with it (docker's --sig-proxy), in both clients; --sig-proxy=false leaves them to the CLI.
func TestSigProxy(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	d.importBusybox(t, "busybox:latest")
	script := `trap "echo got INT; exit 7" INT; echo ready; i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done`
	for _, tc := range []struct {
		name  string
		env   []string
		flags []string
		want  int
	}{
		{"C client", nil, nil, 7},
		{"Go client", []string{"BERTH_FASTRUN=0"}, nil, 7},
		{"no proxy", nil, []string{"--sig-proxy=false"}, -1},
	} {
		args := append(append([]string{"run", "--rm", "--network", "none"}, tc.flags...), "busybox", "sh", "-c", script)
		cmd := exec.Command(berthBin, args...)
		cmd.Env = append(append(os.Environ(), "BERTH_HOST="+d.host), tc.env...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
		buf := make([]byte, 64)
		n, _ := io.ReadAtLeast(out, buf, len("ready\n"))
		if string(buf[:n]) != "ready\n" {
			t.Errorf("%s: first output %q", tc.name, buf[:n])
		}
		_ = cmd.Process.Signal(os.Interrupt)
		rest, _ := io.ReadAll(out)
		err = cmd.Wait()
		timer.Stop()
		code := cmd.ProcessState.ExitCode()
		if code != tc.want || (tc.want == 7 && string(rest) != "got INT\n") {
			t.Errorf("%s: exit %d (%v), output %q; want exit %d", tc.name, code, err, rest, tc.want)
		}
	}
}
