package linux

import (
	"encoding/json"
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{
		"9": 9, "KILL": syscall.SIGKILL, "SIGKILL": syscall.SIGKILL, "term": syscall.SIGTERM,
		"sigusr1": syscall.SIGUSR1, "RTMIN+2": 36, "SIGRTMAX-1": 63, "RTMIN": 34,
	} {
		got, err := ParseSignal(in)
		if err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "65", "-1", "NOPE", "SIGRTMIN+99"} {
		if _, err := ParseSignal(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseSignal(%q) error = %v, want invalid argument", bad, err)
		}
	}
}

func FuzzParseSignal(f *testing.F) {
	for _, s := range []string{"9", "KILL", "SIGRTMIN+3", "rtmax-2", "", "999999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := ParseSignal(s)
		if err == nil && (sig <= 0 || sig > 64) {
			t.Fatalf("ParseSignal(%q) = %d", s, sig)
		}
	})
}

func TestParseMountOptions(t *testing.T) {
	o := parseMountOptions([]string{"rbind", "ro", "nosuid", "rw", "rslave", "mode=755", "size=65536k"})
	if !o.bind || !o.recursive {
		t.Errorf("rbind not recognised: %+v", o)
	}
	if o.flags&unix.MS_RDONLY != 0 || o.flags&unix.MS_NOSUID == 0 {
		t.Errorf("flags = %#x", o.flags)
	}
	if len(o.propagation) != 1 || o.propagation[0] != unix.MS_SLAVE|unix.MS_REC {
		t.Errorf("propagation = %v", o.propagation)
	}
	if strings.Join(o.data, ",") != "mode=755,size=65536k" {
		t.Errorf("data = %v", o.data)
	}
}

func FuzzParseMountOptions(f *testing.F) {
	f.Add("rbind,ro,nosuid,rslave,mode=755")
	f.Add("")
	f.Add("rw,,private,size=1g")
	f.Fuzz(func(t *testing.T, s string) {
		o := parseMountOptions(strings.Split(s, ","))
		for _, d := range o.data {
			if d == "" {
				t.Fatal("empty data option")
			}
		}
	})
}

func TestClampRlimits(t *testing.T) {
	hard := func(int) (uint64, error) { return 20000, nil }
	out, warn, err := clampRlimits([]specs.POSIXRlimit{
		{Type: "RLIMIT_NOFILE", Soft: 1 << 20, Hard: 1 << 20},
		{Type: "RLIMIT_CORE", Soft: 10, Hard: 100},
	}, hard)
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Hard != 20000 || out[0].Soft != 20000 || len(warn) != 1 {
		t.Errorf("not clamped: %+v %v", out, warn)
	}
	if out[1].Hard != 100 || out[1].Soft != 10 {
		t.Errorf("changed a limit below the hard limit: %+v", out[1])
	}
	for _, bad := range [][]specs.POSIXRlimit{
		{{Type: "RLIMIT_BOGUS"}},
		{{Type: "RLIMIT_NOFILE", Soft: 2, Hard: 1}},
		{{Type: "RLIMIT_NOFILE"}, {Type: "RLIMIT_NOFILE"}},
	} {
		if _, _, err := clampRlimits(bad, hard); !errdefs.IsInvalidArgument(err) {
			t.Errorf("clampRlimits(%+v) error = %v", bad, err)
		}
	}
	if _, _, err := clampRlimits([]specs.POSIXRlimit{{Type: "RLIMIT_NOFILE"}}, func(int) (uint64, error) { return 0, errors.New("x") }); err == nil {
		t.Error("getrlimit failure not reported")
	}
}

func TestPlanNamespaces(t *testing.T) {
	p, err := planNamespaces([]specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
		{Type: specs.NetworkNamespace, Path: "/run/netns/x"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.cloneFlags != unix.CLONE_NEWPID|unix.CLONE_NEWNS || !p.unshareCgns || p.joinPID {
		t.Errorf("plan = %+v", p)
	}
	if len(p.join) != 1 || p.join[0] != "1073741824:/run/netns/x" {
		t.Errorf("join = %v", p.join)
	}
	for _, bad := range [][]specs.LinuxNamespace{
		{{Type: "bogus"}}, {{Type: specs.PIDNamespace}, {Type: specs.PIDNamespace}},
		{{Type: specs.NetworkNamespace, Path: "/x\n1:/y"}},
	} {
		if _, err := planNamespaces(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("planNamespaces(%v) error = %v", bad, err)
		}
	}
}

func TestValidateID(t *testing.T) {
	for _, ok := range []string{"a", "abc-1.2_3+x"} {
		if err := validateID(ok); err != nil {
			t.Errorf("validateID(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "../x", "a b", strings.Repeat("a", 1025)} {
		if err := validateID(bad); err == nil {
			t.Errorf("validateID(%q) accepted", bad)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	line := "123 (a b) c)) S 1 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100"
	st, zombie, err := parseProcStat([]byte(line))
	if err != nil || st != 98765 || zombie {
		t.Fatalf("parseProcStat = %d %v %v", st, zombie, err)
	}
	if _, z, _ := parseProcStat([]byte(strings.Replace(line, ") S ", ") Z ", 1))); !z {
		t.Error("zombie not detected")
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("1 (init) S 0 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 5 1000 100"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _, _ = parseProcStat(b) })
}

func TestParseKeyedCount(t *testing.T) {
	b := []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
	if n := parseKeyedCount(b, "oom_kill"); n != 3 {
		t.Errorf("oom_kill = %d", n)
	}
	if n := parseKeyedCount([]byte("low 0\nhigh 0\nmax 4\noom 1\noom_kill 0\n"), "oom_kill"); n != 0 {
		t.Errorf("oom_kill = %d", n)
	}
}

func FuzzParseKeyedCount(f *testing.F) {
	f.Add([]byte("oom_kill 1\n"), "oom_kill")
	f.Fuzz(func(t *testing.T, b []byte, k string) { _ = parseKeyedCount(b, k) })
}

func TestParseCaps(t *testing.T) {
	known, unknown := parseCaps([]string{"CAP_NET_RAW", "cap_chown", "CAP_NOPE"})
	if len(known) != 2 || known[0] != capability.CAP_NET_RAW || known[1] != capability.CAP_CHOWN {
		t.Errorf("known = %v", known)
	}
	if len(unknown) != 1 || unknown[0] != "CAP_NOPE" {
		t.Errorf("unknown = %v", unknown)
	}
}

func TestDefaultSeccompBuilds(t *testing.T) {
	s := DefaultSeccomp()
	if s == nil || s.DefaultAction != specs.ActErrno || len(s.Syscalls) == 0 {
		t.Fatalf("DefaultSeccomp() = %+v", s)
	}
	p, err := compileSeccomp(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.insns) < 10 {
		t.Fatalf("compiled filter has %d instructions", len(p.insns))
	}
}

func TestValidateSpec(t *testing.T) {
	good := DefaultSpec("rootfs", []string{"true"})
	if err := validateSpec(good); err != nil {
		t.Fatal(err)
	}
	bad := DefaultSpec("rootfs", nil)
	if err := validateSpec(bad); !errdefs.IsInvalidArgument(err) {
		t.Errorf("empty args accepted: %v", err)
	}
	bad = DefaultSpec("rootfs", []string{"true"})
	bad.Mounts = append(bad.Mounts, specs.Mount{Destination: "relative"})
	if err := validateSpec(bad); !errdefs.IsInvalidArgument(err) {
		t.Errorf("relative mount accepted: %v", err)
	}
}

// FuzzSpec feeds arbitrary config.json content through every pure check Create applies before
// touching the kernel; none of them may panic.
func FuzzSpec(f *testing.F) {
	b, err := json.Marshal(DefaultSpec("rootfs", []string{"sh"}))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"root":{"path":"r"},"linux":{"namespaces":[{"type":"pid","path":"/x"}]},"process":{"args":["a"],"rlimits":[{"type":"RLIMIT_NOFILE","hard":5,"soft":9}]}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s specs.Spec
		if json.Unmarshal(b, &s) != nil {
			return
		}
		if validateSpec(&s) != nil {
			return
		}
		if s.Linux != nil {
			_, _ = planNamespaces(s.Linux.Namespaces)
			_, _ = rootfsPropagation(s.Linux.RootfsPropagation)
		}
		if s.Process != nil {
			_, _, _ = clampRlimits(s.Process.Rlimits, func(int) (uint64, error) { return 1024, nil })
			if c := s.Process.Capabilities; c != nil {
				_, _ = parseCaps(c.Bounding)
			}
		}
		for _, m := range s.Mounts {
			_ = parseMountOptions(m.Options)
		}
	})
}
