package container

import (
	"slices"
	"strings"
	"testing"

	"github.com/docker/go-units"
	mcontainer "github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func baseInput() SpecInput {
	return SpecInput{
		ID:          "abc",
		Config:      &mcontainer.Config{Cmd: []string{"echo", "hi"}, Hostname: "abc"},
		HostConfig:  &mcontainer.HostConfig{},
		Rootfs:      "/r",
		CgroupsPath: "/berth/abc",
		Seccomp:     &specs.LinuxSeccomp{DefaultAction: specs.ActErrno},
	}
}

func TestSpecDefaults(t *testing.T) {
	s, err := Spec(baseInput())
	if err != nil {
		t.Fatal(err)
	}
	p := s.Process
	if !slices.Equal(p.Args, []string{"echo", "hi"}) || p.Cwd != "/" || !p.NoNewPrivileges {
		t.Fatalf("process = %+v", p)
	}
	if !slices.Equal(p.Capabilities.Bounding, defaultCapabilities) || len(p.Capabilities.Inheritable) != 0 {
		t.Fatalf("caps = %+v", p.Capabilities)
	}
	if p.Env[0] != "PATH="+DefaultPath || p.Env[1] != "HOSTNAME=abc" {
		t.Fatalf("env = %v", p.Env)
	}
	if !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") || !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
		t.Fatal("missing masked or read-only paths")
	}
	if s.Linux.Seccomp == nil {
		t.Fatal("seccomp profile not applied")
	}
	var types []specs.LinuxNamespaceType
	for _, n := range s.Linux.Namespaces {
		types = append(types, n.Type)
	}
	for _, want := range []specs.LinuxNamespaceType{"mount", "pid", "uts", "ipc", "cgroup", "network"} {
		if !slices.Contains(types, want) {
			t.Errorf("namespace %s missing", want)
		}
	}
	var shm, sys bool
	for _, m := range s.Mounts {
		if m.Destination == "/dev/shm" && slices.Contains(m.Options, "size=67108864") {
			shm = true
		}
		if m.Destination == "/sys" && slices.Contains(m.Options, "ro") {
			sys = true
		}
	}
	if !shm || !sys {
		t.Fatalf("mounts: shm %v, ro sys %v", shm, sys)
	}
	if s.Linux.Resources.Devices[0].Allow {
		t.Fatal("device rules must start with deny-all")
	}
}

func TestSpecPrivileged(t *testing.T) {
	in := baseInput()
	in.HostConfig.Privileged = true
	s, err := Spec(in)
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.Seccomp != nil || len(s.Linux.MaskedPaths) != 0 || s.Process.NoNewPrivileges {
		t.Fatal("privileged container still confined")
	}
	if !slices.Contains(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN") {
		t.Fatal("privileged lacks CAP_SYS_ADMIN")
	}
}

func TestCapabilities(t *testing.T) {
	c, err := Capabilities([]string{"sys_admin", "CAP_NET_ADMIN"}, []string{"chown", "NET_RAW"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(c, "CAP_SYS_ADMIN") || !slices.Contains(c, "CAP_NET_ADMIN") || slices.Contains(c, "CAP_CHOWN") || slices.Contains(c, "CAP_NET_RAW") {
		t.Fatalf("caps = %v", c)
	}
	c, err = Capabilities([]string{"KILL"}, []string{"ALL"}, false)
	if err != nil || !slices.Equal(c, []string{"CAP_KILL"}) {
		t.Fatalf("drop ALL add KILL = %v, %v", c, err)
	}
	if _, err := Capabilities([]string{"BOGUS"}, nil, false); err == nil || !strings.Contains(err.Error(), "--cap-add") {
		t.Fatalf("bogus cap error = %v", err)
	}
}

func TestSecurityOpts(t *testing.T) {
	so, err := ParseSecurityOpts([]string{"seccomp=unconfined", "no-new-privileges=false", "apparmor=unconfined"})
	if err != nil || !so.SeccompUnconfined || so.NoNewPrivileges {
		t.Fatalf("%+v %v", so, err)
	}
	so, err = ParseSecurityOpts([]string{"seccomp=/tmp/p.json"})
	if err != nil || so.SeccompProfile != "/tmp/p.json" || !so.NoNewPrivileges {
		t.Fatalf("%+v %v", so, err)
	}
	for _, bad := range []string{"seccomp", "no-new-privileges=maybe", "frobnicate=1"} {
		if _, err := ParseSecurityOpts([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestResources(t *testing.T) {
	pids := int64(100)
	r := Resources(&mcontainer.Resources{Memory: 64 << 20, NanoCPUs: 1500000000, CPUShares: 512, CpusetCpus: "0", PidsLimit: &pids, BlkioWeight: 300})
	if *r.Memory.Limit != 64<<20 || *r.Memory.Swap != 128<<20 {
		t.Fatalf("memory = %+v", r.Memory)
	}
	if *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 || *r.CPU.Shares != 512 || r.CPU.Cpus != "0" {
		t.Fatalf("cpu = %+v", r.CPU)
	}
	if *r.Pids.Limit != 100 || *r.BlockIO.Weight != 300 {
		t.Fatal("pids or blkio wrong")
	}
	if r := Resources(&mcontainer.Resources{}); r.Memory != nil || r.CPU != nil || r.Pids != nil {
		t.Fatal("empty resources produced limits")
	}
}

func TestSpecErrors(t *testing.T) {
	in := baseInput()
	in.Config.Cmd = nil
	if _, err := Spec(in); err == nil || !strings.Contains(err.Error(), "no command") {
		t.Fatalf("err = %v", err)
	}
	in = baseInput()
	in.Config.WorkingDir = "rel"
	if _, err := Spec(in); err == nil {
		t.Fatal("relative workdir accepted")
	}
	in = baseInput()
	in.HostConfig.Ulimits = []*units.Ulimit{{Name: "nofile", Soft: 10, Hard: 5}}
	if _, err := Spec(in); err == nil {
		t.Fatal("soft > hard accepted")
	}
	in = baseInput()
	in.HostConfig.Tmpfs = map[string]string{"/run": "size=1m,exec"}
	s, err := Spec(in)
	if err != nil {
		t.Fatal(err)
	}
	last := s.Mounts[len(s.Mounts)-1]
	if last.Destination != "/run" || slices.Contains(last.Options, "noexec") || !slices.Contains(last.Options, "exec") {
		t.Fatalf("tmpfs mount = %+v", last)
	}
}
