package linux

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Hostile images against both inits: symlinks in the image must never turn a mount onto the
// container's root, or send a read-only bind's remount to another mount.

// tryRun creates and starts c, returning its output and exit code, or the create's error.
func (c *testCtr) tryRun() (string, int, error) {
	c.t.Helper()
	c.writeSpec()
	r, w, err := os.Pipe()
	if err != nil {
		c.t.Fatal(err)
	}
	defer r.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		c.t.Fatal(err)
	}
	defer devnull.Close()
	err = c.rt.Create(context.Background(), c.id, c.bundle, CreateOpts{Stdio: [3]*os.File{devnull, w, w}})
	w.Close()
	if err != nil {
		return "", 0, err
	}
	st, err := c.rt.State(context.Background(), c.id)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.rt.Start(context.Background(), c.id); err != nil {
		c.t.Fatalf("start: %v", err)
	}
	b, _ := io.ReadAll(r)
	code, err := WaitPid(st.Pid)
	if err != nil {
		c.t.Fatal(err)
	}
	return string(b), code, nil
}

func bothInits(t *testing.T, f func(t *testing.T, goInit bool)) {
	for _, goInit := range []bool{false, true} {
		t.Run(map[bool]string{false: "C", true: "Go"}[goInit], func(t *testing.T) { f(t, goInit) })
	}
}

// An image's /rootfs -> / with a read-only bind at /rootfs (the cAdvisor pattern, -v /:/rootfs:ro):
// the bind would be stacked over the container's root and pivoted into, writable.
func TestHostileMountOverRoot(t *testing.T) {
	bothInits(t, func(t *testing.T, goInit bool) {
		host := t.TempDir() // stands for the host's /
		c := newCtr(t, "sh", "-c", "echo x > /pwned")
		c.id += strconv.FormatBool(goInit)
		c.rt.GoInit = goInit
		if err := os.Symlink("/", filepath.Join(c.bundle, "rootfs", "rootfs")); err != nil {
			t.Fatal(err)
		}
		c.spec.Mounts = append(c.spec.Mounts, specs.Mount{Destination: "/rootfs", Type: "bind", Source: host, Options: []string{"rbind", "ro"}})
		out, code, err := c.tryRun()
		if err == nil || !strings.Contains(err.Error(), "resolves to the container's root") {
			t.Errorf("create: %v (exit %d, output %q), want a refusal", err, code, out)
		}
		if _, err := os.Stat(filepath.Join(host, "pwned")); err == nil {
			t.Error("the read-only bind was written")
		}
	})
}

// A read-only bind whose destination goes through the image's symlinks to a directory that
// holds a symlink in the bound content (Debian's /var/run -> /run): finding the new mount again
// by the spec's path would walk through that content and remount something else read-only.
func TestHostileRemountThroughMount(t *testing.T) {
	bothInits(t, func(t *testing.T, goInit bool) {
		hostvar := t.TempDir() // stands for the host's /var, given read-only
		if err := os.Symlink("/run", filepath.Join(hostvar, "run")); err != nil {
			t.Fatal(err)
		}
		c := newCtr(t, "sh", "-c", "echo x > /m/pwned; echo wrote=$?")
		c.id += strconv.FormatBool(goInit)
		c.rt.GoInit = goInit
		rootfs := filepath.Join(c.bundle, "rootfs")
		for _, d := range []string{"m/run", "run"} {
			if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink("/m/run/..", filepath.Join(rootfs, "hostvar")); err != nil {
			t.Fatal(err)
		}
		c.spec.Mounts = append(c.spec.Mounts, specs.Mount{Destination: "/hostvar", Type: "bind", Source: hostvar, Options: []string{"rbind", "ro"}})
		out, code, err := c.tryRun()
		if _, serr := os.Stat(filepath.Join(hostvar, "pwned")); serr == nil {
			t.Errorf("the read-only bind was written (create %v, exit %d, output %q)", err, code, out)
		}
	})
}

// openat2(RESOLVE_IN_ROOT) answers EAGAIN on ".." when anything is renamed or mounted on the
// host meanwhile; the C init must retry (Debian's /etc/resolv.conf -> ../run/... has a "..").
func TestCInitRetriesLookups(t *testing.T) {
	stop, done := make(chan struct{}), make(chan struct{})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = os.Rename(filepath.Join(dir, "x"), filepath.Join(dir, "y"))
			_ = os.Rename(filepath.Join(dir, "y"), filepath.Join(dir, "x"))
		}
	}()
	defer func() { close(stop); <-done }()
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "resolv"), []byte("nameserver 192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range 15 {
		c := newCtr(t, "cat", "/etc/resolv.conf")
		c.id += strconv.Itoa(i)
		rootfs := filepath.Join(c.bundle, "rootfs")
		_ = os.Remove(filepath.Join(rootfs, "etc", "resolv.conf"))
		if err := os.Symlink("../run/resolve/stub.conf", filepath.Join(rootfs, "etc", "resolv.conf")); err != nil {
			t.Fatal(err)
		}
		c.spec.Mounts = append(c.spec.Mounts, specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: filepath.Join(host, "resolv"), Options: []string{"rbind", "ro"}})
		out, code, err := c.tryRun()
		if err != nil || code != 0 || !strings.Contains(out, "192.0.2.1") {
			t.Fatalf("run %d: %v, exit %d, output %q", i, err, code, out)
		}
		if err := c.rt.Delete(context.Background(), c.id, true); err != nil {
			t.Fatal(err)
		}
	}
}

// An init that fails before it waits to be in its cgroup reports its own error, not the
// runtime's broken pipe.
func TestCInitEarlyFailureMessage(t *testing.T) {
	bothInits(t, func(t *testing.T, goInit bool) {
		c := newCtr(t, "true")
		c.id += strconv.FormatBool(goInit)
		c.rt.GoInit = goInit
		proc := filepath.Join(c.bundle, "rootfs", "proc")
		_ = os.RemoveAll(proc)
		if err := os.WriteFile(proc, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err := c.tryRun()
		if err == nil || !strings.Contains(err.Error(), "mount /proc") {
			t.Fatalf("create: %v, want the init's error about /proc", err)
		}
	})
}

// TestInitsAgreeVariants: what TestInitsAgree does not cover, each under both inits.
func TestInitsAgreeVariants(t *testing.T) {
	script := `id; grep -E '^(Cap|NoNewPrivs|Seccomp|Groups)' /proc/self/status
awk '{o=""; for(i=7;i<=NF && $i!="-";i++){f=$i; sub(/:[0-9]+/,"",f); o=o" "f}; print $5, $6, o, $(i+1), $(i+3)}' /proc/self/mountinfo | sort
ls -ld /sys/fs/cgroup/* | awk '{print $1, $NF}'
touch /x 2>&1 | sed 's/^touch: //'; ls /dev/mqueue /sys/class/net | head -3`
	without := func(sp *specs.Spec, drop specs.LinuxNamespaceType) {
		var ns []specs.LinuxNamespace
		for _, n := range sp.Linux.Namespaces {
			if n.Type != drop {
				ns = append(ns, n)
			}
		}
		sp.Linux.Namespaces = ns
	}
	cases := map[string]func(c *testCtr){
		"hostnet-hostipc-readonly-propagation": func(c *testCtr) {
			sp := c.spec
			without(sp, specs.NetworkNamespace)
			without(sp, specs.IPCNamespace)
			sp.Root.Readonly = true
			sp.Linux.RootfsPropagation = "slave"
			sp.Mounts = append(sp.Mounts,
				specs.Mount{Destination: "/data", Type: "bind", Source: c.t.TempDir(), Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec", "rslave"}},
				specs.Mount{Destination: "/t", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m", "rshared"}})
			sp.Process.NoNewPrivileges = false
		},
		"cgroup-rw-no-cgroupns": func(c *testCtr) {
			without(c.spec, specs.CgroupNamespace)
			for i, m := range c.spec.Mounts {
				if m.Type == "cgroup" {
					c.spec.Mounts[i].Options = []string{"nosuid", "noexec", "nodev", "rw"}
				}
			}
		},
		"limits-containerd-cgroups": func(c *testCtr) {
			lim, pids := int64(64<<20), int64(99)
			c.spec.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &lim}
			c.spec.Linux.Resources.Pids = &specs.LinuxPids{Limit: &pids}
		},
		"missing-cwd":       func(c *testCtr) { c.spec.Process.Cwd = "/nonexistent" },
		"missing-command":   func(c *testCtr) { c.spec.Process.Args = []string{"nosuchcmd"} },
		"directory-command": func(c *testCtr) { c.spec.Process.Args = []string{"/etc"} },
		"empty-path": func(c *testCtr) {
			c.spec.Process.Env = []string{"PATH="}
			c.spec.Process.Cwd = "/bin"
		},
	}
	for name, mut := range cases {
		t.Run(name, func(t *testing.T) {
			var outs [2]string
			for i, goInit := range []bool{false, true} {
				c := newCtr(t, "sh", "-c", script)
				c.id += strconv.FormatBool(goInit)
				c.rt.GoInit = goInit
				mut(c)
				out, code, err := c.tryRun()
				outs[i] = out + "exit " + strconv.Itoa(code)
				if err != nil {
					outs[i] = "error: " + strings.TrimPrefix(err.Error(), "container init: ")
				}
			}
			if outs[0] != outs[1] {
				t.Errorf("the inits disagree.\nC init:\n%s\nGo init:\n%s", outs[0], outs[1])
			}
		})
	}
}
