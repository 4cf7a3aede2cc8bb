package container

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/go-units"
	mcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultCapabilities is Docker's default capability set.
var defaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// DefaultCapabilities returns Docker's default capability set.
func DefaultCapabilities() []string { return slices.Clone(defaultCapabilities) }

// Docker's masked and read-only paths.
var (
	defaultMaskedPaths = []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	defaultReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// DefaultPath is the PATH a container gets when neither image nor user sets one.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultShmSize is /dev/shm's size when --shm-size is not given, as in Docker.
const DefaultShmSize = 64 << 20

// User is a resolved user: what the image's /etc/passwd and /etc/group say of Config.User.
type User struct {
	UID, GID       uint32
	AdditionalGids []uint32
	Home           string
}

// SecurityOpts are the parsed --security-opt values.
type SecurityOpts struct {
	// SeccompUnconfined disables seccomp; SeccompProfile is a custom profile's JSON path as the
	// user gave it (the caller loads it).
	SeccompUnconfined bool
	SeccompProfile    string
	// NoNewPrivileges is on by default in berth; `no-new-privileges=false` turns it off.
	NoNewPrivileges bool
}

// ParseSecurityOpts parses Docker's --security-opt values. Unknown keys are an error, except
// the LSM ones (apparmor, label, systempaths=unconfined handled elsewhere) that have no effect
// here and are accepted for compatibility.
func ParseSecurityOpts(opts []string) (SecurityOpts, error) {
	so := SecurityOpts{NoNewPrivileges: true}
	for _, o := range opts {
		k, v, hasV := strings.Cut(o, "=")
		if !hasV {
			k, v, hasV = strings.Cut(o, ":") // legacy "seccomp:unconfined"
		}
		switch k {
		case "seccomp":
			if !hasV || v == "" {
				return so, fmt.Errorf("invalid --security-opt %q: seccomp needs a value: unconfined or a profile path", o)
			}
			if v == "unconfined" {
				so.SeccompUnconfined = true
			} else if v != "builtin" {
				so.SeccompProfile = v
			}
		case "no-new-privileges":
			if !hasV {
				so.NoNewPrivileges = true
				continue
			}
			b, err := strconv.ParseBool(v)
			if err != nil {
				return so, fmt.Errorf("invalid --security-opt %q: no-new-privileges takes true or false", o)
			}
			so.NoNewPrivileges = b
		case "apparmor", "label", "systempaths", "writable-cgroups":
			// No AppArmor or SELinux on berth's hosts; accepted so that scripts written for Docker run.
		default:
			return so, fmt.Errorf("invalid --security-opt %q: unknown option %q (supported: seccomp=unconfined|PATH, no-new-privileges[=true|false])", o, k)
		}
	}
	return so, nil
}

// SpecInput is everything Spec needs. The caller has merged the image's config into Config (as
// Docker does at create time) and resolved User against the image.
type SpecInput struct {
	ID         string
	Config     *mcontainer.Config
	HostConfig *mcontainer.HostConfig
	User       User
	// Rootfs is the prepared root filesystem (an overlay mount point).
	Rootfs string
	// CgroupsPath is the container's cgroup, relative to the cgroup root (e.g. "/berth/<id>").
	CgroupsPath string
	// NetNSPath is a network namespace to join; empty means a new one, and NetHost the host's.
	NetNSPath string
	NetHost   bool
	// Files bind-mounted into the container; empty ones are skipped.
	HostsPath, ResolvConfPath, HostnamePath string
	// Seccomp is the profile to apply (Docker's default unless the user chose one); nil means none.
	Seccomp *specs.LinuxSeccomp
	// Mounts are extra mounts (volumes, binds) already resolved to host paths.
	Mounts []specs.Mount
	// InitBinary, when set and HostConfig.Init asks for it, is the host path of the init
	// (the static berth binary) mounted at InitPath and run as PID 1 (`--init`).
	InitBinary string
}

// InitPath is where `--init` mounts the init inside the container, as Docker does.
const InitPath = "/sbin/docker-init"

// Spec builds the OCI runtime spec for a container with Docker's defaults.
func Spec(in SpecInput) (*specs.Spec, error) {
	cfg, hc := in.Config, in.HostConfig
	if cfg == nil || hc == nil {
		return nil, fmt.Errorf("container %s: missing config", in.ID)
	}
	args := append(slices.Clone(cfg.Entrypoint), cfg.Cmd...)
	if len(args) == 0 {
		return nil, fmt.Errorf("no command specified: the image has no CMD or ENTRYPOINT; give a command after the image name")
	}
	useInit := hc.Init != nil && *hc.Init && in.InitBinary != ""
	if useInit {
		args = append([]string{InitPath, "--"}, args...)
	}
	secopts, err := ParseSecurityOpts(hc.SecurityOpt)
	if err != nil {
		return nil, err
	}
	caps, err := Capabilities(hc.CapAdd, hc.CapDrop, hc.Privileged)
	if err != nil {
		return nil, err
	}
	env := withDefaultEnv(cfg.Env, cfg.Hostname, cfg.Tty)
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	if !path.IsAbs(cwd) {
		return nil, fmt.Errorf("invalid working directory %q: it must be an absolute path", cwd)
	}
	rlimits, err := Rlimits(hc.Ulimits)
	if err != nil {
		return nil, err
	}
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal: cfg.Tty,
			User: specs.User{
				UID:            in.User.UID,
				GID:            in.User.GID,
				AdditionalGids: in.User.AdditionalGids,
				Umask:          hc.Umask,
			},
			Args: args,
			Env:  env,
			Cwd:  path.Clean(cwd),
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps,
				Effective: caps,
				Permitted: caps,
			},
			Rlimits:         rlimits,
			NoNewPrivileges: secopts.NoNewPrivileges && !hc.Privileged,
			OOMScoreAdj:     &hc.OomScoreAdj,
		},
		Root:     &specs.Root{Path: in.Rootfs, Readonly: hc.ReadonlyRootfs},
		Hostname: cfg.Hostname,
		Mounts:   defaultMounts(hc),
		Linux: &specs.Linux{
			CgroupsPath: in.CgroupsPath,
			Namespaces:  namespaces(in),
			Resources:   Resources(&hc.Resources),
			Sysctl:      hc.Sysctls,
		},
	}
	if cfg.Tty && len(hc.ConsoleSize) == 2 && hc.ConsoleSize[0] > 0 {
		s.Process.ConsoleSize = &specs.Box{Height: hc.ConsoleSize[0], Width: hc.ConsoleSize[1]}
	}
	if !hc.Privileged {
		s.Linux.MaskedPaths = slices.Clone(defaultMaskedPaths)
		s.Linux.ReadonlyPaths = slices.Clone(defaultReadonlyPaths)
		if hc.MaskedPaths != nil {
			s.Linux.MaskedPaths = slices.Clone(hc.MaskedPaths)
		}
		if hc.ReadonlyPaths != nil {
			s.Linux.ReadonlyPaths = slices.Clone(hc.ReadonlyPaths)
		}
		if !secopts.SeccompUnconfined {
			s.Linux.Seccomp = in.Seccomp
		}
	}
	// tmpfs mounts from --tmpfs.
	tmpfsPaths := make([]string, 0, len(hc.Tmpfs))
	for p := range hc.Tmpfs {
		tmpfsPaths = append(tmpfsPaths, p)
	}
	slices.Sort(tmpfsPaths)
	for _, p := range tmpfsPaths {
		if !path.IsAbs(p) {
			return nil, fmt.Errorf("invalid --tmpfs %q: the mount point must be an absolute path", p)
		}
		opts := []string{"nosuid", "nodev", "noexec"}
		if o := hc.Tmpfs[p]; o != "" {
			opts = mergeTmpfsOptions(opts, strings.Split(o, ","))
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: path.Clean(p), Type: "tmpfs", Source: "tmpfs", Options: opts})
	}
	for _, f := range []struct{ src, dst string }{
		{in.HostsPath, "/etc/hosts"}, {in.ResolvConfPath, "/etc/resolv.conf"}, {in.HostnamePath, "/etc/hostname"},
	} {
		if f.src == "" {
			continue
		}
		opts := []string{"rbind", "rprivate"}
		if hc.ReadonlyRootfs {
			opts = append(opts, "ro")
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: f.dst, Type: "bind", Source: f.src, Options: opts})
	}
	s.Mounts = append(s.Mounts, in.Mounts...)
	if useInit {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: InitPath, Type: "bind", Source: in.InitBinary, Options: []string{"rbind", "ro", "rprivate"}})
	}
	if hc.Privileged {
		for i := range s.Mounts {
			if s.Mounts[i].Destination == "/sys" || s.Mounts[i].Destination == "/sys/fs/cgroup" {
				s.Mounts[i].Options = slices.DeleteFunc(s.Mounts[i].Options, func(o string) bool { return o == "ro" })
				s.Mounts[i].Options = append(s.Mounts[i].Options, "rw")
			}
		}
	}
	s.Linux.Resources.Devices = deviceRules(hc.Privileged)
	return s, nil
}

func withDefaultEnv(env []string, hostname string, tty bool) []string {
	out := make([]string, 0, len(env)+3)
	has := func(k string) bool {
		for _, e := range env {
			if strings.HasPrefix(e, k+"=") {
				return true
			}
		}
		return false
	}
	if !has("PATH") {
		out = append(out, "PATH="+DefaultPath)
	}
	if hostname != "" && !has("HOSTNAME") {
		out = append(out, "HOSTNAME="+hostname)
	}
	if tty && !has("TERM") {
		out = append(out, "TERM=xterm")
	}
	return append(out, env...)
}

func defaultMounts(hc *mcontainer.HostConfig) []specs.Mount {
	shm := hc.ShmSize
	if shm <= 0 {
		shm = DefaultShmSize
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=" + strconv.FormatInt(shm, 10)}},
	}
}

// mergeTmpfsOptions lets user options override the defaults (e.g. "exec" over "noexec").
func mergeTmpfsOptions(defaults, user []string) []string {
	opposite := map[string]string{"exec": "noexec", "noexec": "exec", "suid": "nosuid", "nosuid": "suid", "dev": "nodev", "nodev": "dev"}
	out := slices.Clone(defaults)
	for _, u := range user {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		if opp, ok := opposite[u]; ok {
			out = slices.DeleteFunc(out, func(o string) bool { return o == opp })
		}
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

func namespaces(in SpecInput) []specs.LinuxNamespace {
	ns := []specs.LinuxNamespace{
		{Type: specs.MountNamespace},
		{Type: specs.PIDNamespace},
		{Type: specs.UTSNamespace},
		{Type: specs.IPCNamespace},
		{Type: specs.CgroupNamespace},
	}
	hc := in.HostConfig
	if hc.PidMode == "host" {
		ns = slices.DeleteFunc(ns, func(n specs.LinuxNamespace) bool { return n.Type == specs.PIDNamespace })
	}
	if hc.IpcMode == "host" {
		ns = slices.DeleteFunc(ns, func(n specs.LinuxNamespace) bool { return n.Type == specs.IPCNamespace })
	}
	if hc.UTSMode == "host" {
		ns = slices.DeleteFunc(ns, func(n specs.LinuxNamespace) bool { return n.Type == specs.UTSNamespace })
	}
	if hc.CgroupnsMode == mcontainer.CgroupnsModeHost {
		ns = slices.DeleteFunc(ns, func(n specs.LinuxNamespace) bool { return n.Type == specs.CgroupNamespace })
	}
	if !in.NetHost {
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: in.NetNSPath})
	}
	return ns
}

// Capabilities applies --cap-add and --cap-drop to Docker's default set. Names are
// case-insensitive, with or without "CAP_"; "ALL" means every capability the kernel knows.
func Capabilities(add, drop []string, privileged bool) ([]string, error) {
	all := allCapabilities()
	if privileged {
		return all, nil
	}
	norm := func(flag string, names []string) ([]string, bool, error) {
		var out []string
		hasAll := false
		for _, n := range names {
			n = strings.ToUpper(strings.TrimSpace(n))
			if n == "ALL" {
				hasAll = true
				continue
			}
			if !strings.HasPrefix(n, "CAP_") {
				n = "CAP_" + n
			}
			if !slices.Contains(all, n) {
				return nil, false, fmt.Errorf("invalid %s %q: unknown capability (see capabilities(7))", flag, strings.TrimPrefix(n, "CAP_"))
			}
			out = append(out, n)
		}
		return out, hasAll, nil
	}
	adds, addAll, err := norm("--cap-add", add)
	if err != nil {
		return nil, err
	}
	drops, dropAll, err := norm("--cap-drop", drop)
	if err != nil {
		return nil, err
	}
	var caps []string
	switch {
	case addAll:
		caps = slices.Clone(all)
	case dropAll:
		caps = nil
	default:
		caps = DefaultCapabilities()
	}
	if !addAll {
		for _, c := range adds {
			if !slices.Contains(caps, c) {
				caps = append(caps, c)
			}
		}
	}
	caps = slices.DeleteFunc(caps, func(c string) bool { return slices.Contains(drops, c) && !slices.Contains(adds, c) })
	if caps == nil {
		caps = []string{}
	}
	return caps, nil
}

func allCapabilities() []string {
	var out []string
	for _, c := range capability.ListKnown() {
		out = append(out, "CAP_"+strings.ToUpper(c.String()))
	}
	return out
}

// rlimitNames maps --ulimit names to OCI rlimit types.
var rlimitNames = map[string]string{
	"core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
	"locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE",
	"nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS",
	"rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING",
	"stack": "RLIMIT_STACK", "as": "RLIMIT_AS",
}

// Rlimits converts --ulimit values. The runtime clamps them to what the host allows.
func Rlimits(ul []*units.Ulimit) ([]specs.POSIXRlimit, error) {
	var out []specs.POSIXRlimit
	for _, u := range ul {
		if u == nil {
			continue
		}
		t, ok := rlimitNames[u.Name]
		if !ok {
			return nil, fmt.Errorf("invalid --ulimit %q: unknown limit name", u.Name)
		}
		if u.Soft < 0 || u.Hard < 0 || u.Soft > u.Hard {
			return nil, fmt.Errorf("invalid --ulimit %s=%d:%d: soft limit must be at most the hard limit, both non-negative", u.Name, u.Soft, u.Hard)
		}
		out = append(out, specs.POSIXRlimit{Type: t, Soft: uint64(u.Soft), Hard: uint64(u.Hard)})
	}
	return out, nil
}

// Resources converts Docker's resource settings to OCI's.
func Resources(r *mcontainer.Resources) *specs.LinuxResources {
	out := &specs.LinuxResources{}
	mem := &specs.LinuxMemory{}
	setMem := false
	if r.Memory > 0 {
		mem.Limit = ptr(r.Memory)
		setMem = true
		// Docker: with no --memory-swap, swap equals memory (total = 2x).
		switch {
		case r.MemorySwap > 0:
			mem.Swap = ptr(r.MemorySwap)
		case r.MemorySwap == 0:
			mem.Swap = ptr(2 * r.Memory)
		case r.MemorySwap == -1:
			mem.Swap = ptr(int64(-1))
		}
	}
	if r.MemoryReservation > 0 {
		mem.Reservation = ptr(r.MemoryReservation)
		setMem = true
	}
	if r.MemorySwappiness != nil && *r.MemorySwappiness >= 0 {
		mem.Swappiness = ptr(uint64(*r.MemorySwappiness))
		setMem = true
	}
	if r.OomKillDisable != nil && *r.OomKillDisable {
		mem.DisableOOMKiller = ptr(true)
		setMem = true
	}
	if setMem {
		out.Memory = mem
	}
	cpu := &specs.LinuxCPU{}
	setCPU := false
	if r.CPUShares > 0 {
		cpu.Shares = ptr(uint64(r.CPUShares))
		setCPU = true
	}
	if r.NanoCPUs > 0 {
		// --cpus: quota over Docker's 100ms period.
		period := uint64(100000)
		cpu.Period = &period
		cpu.Quota = ptr(r.NanoCPUs * int64(period) / 1e9)
		setCPU = true
	}
	if r.CPUPeriod > 0 {
		cpu.Period = ptr(uint64(r.CPUPeriod))
		setCPU = true
	}
	if r.CPUQuota > 0 {
		cpu.Quota = ptr(r.CPUQuota)
		setCPU = true
	}
	if r.CpusetCpus != "" {
		cpu.Cpus = r.CpusetCpus
		setCPU = true
	}
	if r.CpusetMems != "" {
		cpu.Mems = r.CpusetMems
		setCPU = true
	}
	if setCPU {
		out.CPU = cpu
	}
	if r.PidsLimit != nil && *r.PidsLimit > 0 {
		out.Pids = &specs.LinuxPids{Limit: r.PidsLimit}
	}
	if r.BlkioWeight > 0 {
		out.BlockIO = &specs.LinuxBlockIO{Weight: ptr(r.BlkioWeight)}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// deviceRules are Docker's default device cgroup rules: deny all, then allow mknod of any
// device and use of the standard character devices.
func deviceRules(privileged bool) []specs.LinuxDeviceCgroup {
	if privileged {
		return []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	}
	c := func(major, minor int64, access string) specs.LinuxDeviceCgroup {
		r := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Access: access}
		if major >= 0 {
			r.Major = ptr(major)
		}
		if minor >= 0 {
			r.Minor = ptr(minor)
		}
		return r
	}
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		c(-1, -1, "m"),
		{Allow: true, Type: "b", Access: "m"},
		c(1, 3, "rwm"),    // null
		c(1, 5, "rwm"),    // zero
		c(1, 7, "rwm"),    // full
		c(1, 8, "rwm"),    // random
		c(1, 9, "rwm"),    // urandom
		c(5, 0, "rwm"),    // tty
		c(5, 1, "rwm"),    // console
		c(5, 2, "rwm"),    // ptmx
		c(136, -1, "rwm"), // pts
		c(10, 200, "rwm"), // tun
	}
}
