package linux

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestCInitOpcodes(t *testing.T) {
	var want []uint32
	for c := ciSetsid; c <= ciMax; c++ {
		want = append(want, c)
	}
	if got := cOpcodes(); !slices.Equal(got, want) {
		t.Fatalf("cinit.h opcodes %v, cinit_prog.go %v", got, want)
	}
	if got := cMkKinds(); !slices.Equal(got, []uint64{ciMkNone, ciMkDir, ciMkFile}) {
		t.Fatalf("cinit.h mount-point kinds %v", got)
	}
	if cMagic() != ciMagic {
		t.Fatalf("magic %#x, want %#x", cMagic(), ciMagic)
	}
}

type decodedOp struct {
	code uint32
	ints []uint64
	strs []string
}

// decodeProgram is the C parser's twin, for checking what cinitProgram builds.
func decodeProgram(t *testing.T, b []byte) []decodedOp {
	t.Helper()
	if len(b) < 8 || binary.NativeEndian.Uint32(b) != ciMagic || int(binary.NativeEndian.Uint32(b[4:])) != len(b)-8 {
		t.Fatalf("bad header")
	}
	b = b[8:]
	var ops []decodedOp
	u32 := func() uint32 { v := binary.NativeEndian.Uint32(b); b = b[4:]; return v }
	for len(b) > 0 {
		var o decodedOp
		o.code = u32()
		for n := u32(); n > 0; n-- {
			o.ints = append(o.ints, binary.NativeEndian.Uint64(b))
			b = b[8:]
		}
		for n := u32(); n > 0; n-- {
			l := u32()
			o.strs = append(o.strs, string(b[:l]))
			b = b[l:]
		}
		ops = append(ops, o)
	}
	return ops
}

func TestCInitProgram(t *testing.T) {
	sp := DefaultSpec("/rootfs", []string{"sh", "-c", "true"})
	sp.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10, 20}}
	sp.Process.Cwd = "/work"
	sp.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1", "kernel.msgmax": "8192"}
	cfg := initConfig{Mode: initModeCreate, ID: "c1", Spec: sp, Rootfs: "/rootfs", Bundle: "/b", NewMountNS: true, NewUTSNS: true, UnshareCgroupNS: true,
		Cgroup: cgroupState{V1: map[string]string{"memory": "/x/c1", "cpu": "/x/c1"}}, Seccomp: &seccompBPF{Program: make([]byte, 16)}}
	b, err := cinitProgram(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	ops := decodeProgram(t, b)
	idx := func(code uint32) int {
		return slices.IndexFunc(ops, func(o decodedOp) bool { return o.code == code })
	}
	last := func(code uint32) int {
		i := -1
		for k, o := range ops {
			if o.code == code {
				i = k
			}
		}
		return i
	}
	// The Go init's order: rootfs, pivot, sysctls, masks; then ready; then rlimits, no_new_privs,
	// capabilities around the user switch and seccomp last (no_new_privs is set); only the exec
	// waits for Start, as in runc.
	order := []uint32{ciSetsid, ciKeyring, ciMountHost, ciOpenRoot, ciMount, ciMknod, ciPivot, ciWrite, ciMask, ciRdonly,
		ciHostname, ciChdir, ciLookpath, ciArg, ciEnv, ciCloseFDs, ciReady, ciRlimit, ciNNP, ciCapBset, ciKeepCaps,
		ciSetgroups, ciSetgid, ciSetuid, ciCapset, ciAmbient, ciSeccomp, ciWaitStart, ciExec}
	prev := -1
	for _, c := range order {
		i := idx(c)
		if i < 0 || i < prev {
			t.Fatalf("op %d at %d, previous at %d: %v", c, i, prev, ops)
		}
		prev = i
	}
	if last(ciExec) != len(ops)-1 || idx(ciWaitStart) != len(ops)-2 {
		t.Fatal("the wait for Start and the exec are not last")
	}
	// The init waits to be in its cgroup once, before the cgroup mount, and makes its cgroup
	// namespace right after.
	joined, cgMount := idx(ciJoined), slices.IndexFunc(ops, func(o decodedOp) bool { return o.code == ciMount && o.strs[1] == "/sys/fs/cgroup" })
	if joined < 0 || joined != last(ciJoined) || joined > cgMount || idx(ciUnshare) != joined+1 {
		t.Errorf("joined at %d (last %d), cgroup mount at %d, unshare at %d", joined, last(ciJoined), cgMount, idx(ciUnshare))
	}
	if o := ops[idx(ciSetgroups)]; !slices.Equal(o.ints, []uint64{10, 20}) {
		t.Errorf("setgroups %v", o.ints)
	}
	// Sysctls in a stable order, as paths below /proc/sys.
	var sysctls []string
	for _, o := range ops {
		if o.code == ciWrite {
			sysctls = append(sysctls, o.strs[0]+"="+o.strs[1])
		}
	}
	if want := []string{"/proc/sys/kernel/msgmax=8192", "/proc/sys/net/ipv4/ip_forward=1"}; !slices.Equal(sysctls, want) {
		t.Errorf("sysctls %v, want %v", sysctls, want)
	}
	// Every spec mount, with the cgroup mount expanded into a tmpfs and one bind per controller.
	var dests []string
	for _, o := range ops {
		if o.code == ciMount {
			dests = append(dests, o.strs[1])
		}
	}
	want := []string{"/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"}
	if !slices.Equal(dests, want) {
		t.Errorf("mounts %v, want %v", dests, want)
	}

	// A path with a NUL byte is the Go init's to refuse.
	sp.Process.Args = []string{"a\x00b"}
	if _, err := cinitProgram(&cfg); !errors.Is(err, errNoCInit) {
		t.Errorf("NUL in args: %v", err)
	}
}

func TestCInitEligible(t *testing.T) {
	sp := DefaultSpec("/rootfs", []string{"true"})
	plan, err := planNamespaces(sp.Linux.Namespaces)
	if err != nil {
		t.Fatal(err)
	}
	if isUserNS() {
		t.Skip("runs in a user namespace: the Go init's")
	}
	if !cinitEligible(sp, plan, false) {
		t.Fatal("Docker's usual spec must go to the C init")
	}
	if cinitEligible(sp, plan, true) {
		t.Error("a container without a process went to the C init")
	}
	withHook := *sp
	withHook.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/true"}}}
	if cinitEligible(&withHook, plan, false) {
		t.Error("hooks went to the C init")
	}
	userns := plan
	userns.cloneFlags |= unix.CLONE_NEWUSER
	if cinitEligible(sp, userns, false) {
		t.Error("a user namespace went to the C init")
	}
	t.Setenv("BERTH_INIT", "go")
	if cinitEligible(sp, plan, false) {
		t.Error("BERTH_INIT=go ignored")
	}
}

// TestCInitBadProgram starts this test binary as a C init and feeds it garbage: it must answer
// with an error in the Go init's format and exit, never run anything. The messages checked are
// the C parser's own.
func TestCInitBadProgram(t *testing.T) {
	for name, tc := range map[string]struct {
		input []byte
		want  string
	}{
		"bad header": {[]byte("hello world, not a program"), "bad header"},
		"truncated":  {append(binary.NativeEndian.AppendUint32(binary.NativeEndian.AppendUint32(nil, ciMagic), 100), 1, 2, 3), "short read"},
		"bad op": {func() []byte {
			p := &ciProgram{}
			p.op(ciMax+5, nil)
			return p.bytes()
		}(), "bad op"},
		"too many ints": {func() []byte {
			body := binary.NativeEndian.AppendUint32(nil, ciSetsid)
			body = binary.NativeEndian.AppendUint32(body, 1000)
			out := binary.NativeEndian.AppendUint32(nil, ciMagic)
			out = binary.NativeEndian.AppendUint32(out, uint32(len(body)))
			return append(out, body...)
		}(), "with 1000 ints"},
		"cut record": {func() []byte {
			p := &ciProgram{}
			p.op(ciHostname, nil, "name")
			b := p.bytes()
			b = b[:len(b)-2]
			binary.NativeEndian.PutUint32(b[4:], uint32(len(b)-8))
			return b
		}(), "truncated program"},
	} {
		t.Run(name, func(t *testing.T) {
			ours := startCInit(t, "init")
			if _, err := ours.conn.Write(tc.input); err != nil {
				t.Fatal(err)
			}
			_ = unix.Shutdown(int(ours.conn.Fd()), unix.SHUT_WR)
			line, err := bufio.NewReader(ours.conn).ReadBytes('\n')
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			var m syncMsg
			if err := json.Unmarshal(line, &m); err != nil || m.Type != msgError || !strings.Contains(m.Error, tc.want) {
				t.Fatalf("answer %q (%v), want an error with %q", line, err, tc.want)
			}
			if err := ours.cmd.Wait(); err == nil {
				t.Fatal("the init exited 0")
			}
		})
	}
	// The variable alone does not make another berth process an init.
	t.Run("not init", func(t *testing.T) {
		ours := startCInit(t, "-test.run=^$")
		_ = ours.conn.Close()
		if err := ours.cmd.Wait(); err != nil {
			t.Fatalf("a process that is not `berth init` took the variable: %v", err)
		}
	})
}

type cinitProc struct {
	cmd  *exec.Cmd
	conn *os.File
}

// startCInit runs this test binary with arg as argv[1], _BERTH_CINIT set and a socket as fd 3.
func startCInit(t *testing.T, arg string) cinitProc {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
	t.Cleanup(func() { ours.Close() })
	cmd := exec.Command(os.Args[0], arg)
	cmd.Env = []string{envCInit + "=1"}
	cmd.ExtraFiles = []*os.File{theirs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	return cinitProc{cmd: cmd, conn: ours}
}

// TestInitsAgree runs the same container under the C and the Go init and compares what the
// process sees: the two must be twins.
func TestInitsAgree(t *testing.T) {
	// As the shim does: neither init may pass these on to the container.
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	defer signal.Reset(syscall.SIGHUP, syscall.SIGPIPE)
	// glibc's own signal (SIGCANCEL, 32), which only the raw system call reaches.
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, 32, uintptr(unsafe.Pointer(&[4]uintptr{1})), 0, 8, 0, 0); e != 0 {
		t.Fatal(e)
	}
	defer unix.RawSyscall6(unix.SYS_RT_SIGACTION, 32, uintptr(unsafe.Pointer(&[4]uintptr{})), 0, 8, 0, 0)
	script := `id; hostname; pwd; umask; ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj
grep -E '^(Cap|NoNewPrivs|Seccomp|SigIgn|SigBlk)' /proc/self/status
cat /proc/mounts | cut -d' ' -f2-4 | sort
ls -ln /dev | awk '{print $1, $3, $4, $5, $6, $NF}'
readlink /dev/ptmx; readlink /dev/fd; readlink /var/run; cat /proc/sys/kernel/msgmax
cat /etc/resolv.conf /data/file; ls /data /var/run /etc/srv
echo "$FOO"`
	run := func(goInit bool) string {
		c := newCtr(t, "sh", "-c", script)
		c.rt.GoInit = goInit
		rootfs := filepath.Join(c.bundle, "rootfs")
		// Dangling symlinks, as in Debian and Ubuntu images: a file and a directory mount
		// through them must create their targets.
		_ = os.Remove(filepath.Join(rootfs, "etc", "resolv.conf"))
		if err := os.Symlink("../run/resolve/stub.conf", filepath.Join(rootfs, "etc", "resolv.conf")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/srv-real", filepath.Join(rootfs, "etc", "srv")); err != nil {
			t.Fatal(err)
		}
		_ = os.RemoveAll(filepath.Join(rootfs, "var", "run"))
		_ = os.MkdirAll(filepath.Join(rootfs, "var"), 0o755)
		if err := os.Symlink("/run", filepath.Join(rootfs, "var", "run")); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(rootfs, "work", "dir"), 0o755); err != nil {
			t.Fatal(err)
		}
		host := t.TempDir()
		if err := os.WriteFile(filepath.Join(host, "resolv"), []byte("nameserver 192.0.2.1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		data := t.TempDir()
		if err := os.WriteFile(filepath.Join(data, "file"), []byte("data\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		oom := 500
		umask := uint32(0o027)
		sp := c.spec
		sp.Hostname = "twins"
		sp.Process.Cwd = "/work/dir"
		sp.Process.Env = append(sp.Process.Env, "FOO=bar baz")
		sp.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10, 20}, Umask: &umask}
		sp.Process.OOMScoreAdj = &oom
		sp.Process.Capabilities.Ambient = []string{"CAP_NET_BIND_SERVICE"}
		sp.Process.Capabilities.Inheritable = []string{"CAP_NET_BIND_SERVICE"}
		sp.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 512, Soft: 256}}
		sp.Mounts = append(sp.Mounts,
			specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: filepath.Join(host, "resolv"), Options: []string{"rbind", "ro"}},
			specs.Mount{Destination: "/data", Type: "bind", Source: data, Options: []string{"rbind", "rw", "nosuid"}},
			specs.Mount{Destination: "/data/sub", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}},
			specs.Mount{Destination: "/etc/srv/x", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}},
			specs.Mount{Destination: "/var/run/app", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m", "mode=700"}},
		)
		sp.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}}
		sp.Linux.Sysctl = map[string]string{"kernel.msgmax": "12345"}
		out, code := c.run()
		if code != 0 {
			t.Fatalf("go init %v: exit %d, output:\n%s", goInit, code, out)
		}
		if !goInit {
			// Both ran, and the C one in its own right: its program carried the container.
			if strings.Contains(out, "berth init") {
				t.Fatalf("output mentions the init:\n%s", out)
			}
		}
		return out
	}
	cOut, goOut := run(false), run(true)
	if cOut != goOut {
		t.Fatalf("the inits disagree.\nC init:\n%s\nGo init:\n%s", cOut, goOut)
	}
	for _, want := range []string{"uid=1000 gid=1000 groups=10,20", "twins", "/work/dir", "0027", "256", "512", "500",
		"nameserver 192.0.2.1", "data", "app", "bar baz", "12345", "pts/ptmx", "NoNewPrivs:\t1", "Seccomp:\t2",
		"SigIgn:\t0000000000000000", "SigBlk:\t0000000000000000"} {
		if !strings.Contains(cOut, want) {
			t.Errorf("output lacks %q:\n%s", want, cOut)
		}
	}
}

// TestCInitTakesDockersSpec checks that the C init, not the Go one, sets up Docker's usual
// container: a created container's init is a single-threaded process (the Go init has the Go
// runtime's threads).
func TestCInitTakesDockersSpec(t *testing.T) {
	for _, goInit := range []bool{false, true} {
		c := newCtr(t, "true")
		c.id += strconv.FormatBool(goInit)
		c.rt.GoInit = goInit
		out := c.create(CreateOpts{})
		defer out.Close()
		st, err := c.rt.State(context.Background(), c.id)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(st.Pid) + "/status")
		if err != nil {
			t.Fatal(err)
		}
		single := strings.Contains(string(b), "\nThreads:\t1\n")
		if single == goInit {
			t.Errorf("GoInit=%v: init single-threaded=%v", goInit, single)
		}
		if err := c.rt.Delete(context.Background(), c.id, true); err != nil {
			t.Fatal(err)
		}
	}
}
