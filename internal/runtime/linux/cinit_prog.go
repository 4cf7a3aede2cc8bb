package linux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The C init (cinit.c) runs a program of operations that this file derives from the same
// initConfig the Go init reads, in the Go init's order. Keep the two in step: a change to
// init.go or rootfs.go needs its twin here. The codes match cinit.h (TestCInitOpcodes).
const (
	ciSetsid uint32 = iota + 1
	ciKeyring
	ciUnshare
	ciMountHost
	ciOpenRoot
	ciMount
	ciMknod
	ciSymlink
	ciPivot
	ciWrite
	ciMask
	ciRdonly
	ciRemountRO
	ciPropagate
	ciHostname
	ciDomainname
	ciConsole
	ciChdir
	ciLookpath
	ciArg
	ciEnv
	ciCloseFDs
	ciReady
	ciRlimit
	ciNNP
	ciSeccomp
	ciCapBset
	ciKeepCaps
	ciSetgroups
	ciSetgid
	ciSetuid
	ciUmask
	ciCapset
	ciAmbient
	ciExec
	ciJoined
	ciWaitStart
	ciMax
)

const (
	ciMkNone uint64 = iota
	ciMkDir
	ciMkFile
)

const (
	ciMagic    = 0x31494342 // "BCI1"
	ciMaxInts  = 64
	ciMaxStrs  = 8
	envCInit   = "_BERTH_CINIT"
	defaultEnv = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// errNoCInit marks a config the C init does not take; the Go init runs it instead.
var errNoCInit = errors.New("not for the C init")

type ciProgram struct {
	b   []byte
	err error
	// unshareCgroupNS and joined: see joinedCgroup.
	unshareCgroupNS, joined bool
}

// joinedCgroup marks the point from which the init must sit in its cgroup: the runtime sends the
// program first and the cgroup is made while the init mounts the rootfs; the init waits here for
// the byte that says it was moved (CreatePid). A new cgroup namespace is made here too, so that
// it is rooted at the container's cgroup.
func (p *ciProgram) joinedCgroup() {
	if p.joined {
		return
	}
	p.joined = true
	p.op(ciJoined, nil)
	if p.unshareCgroupNS {
		p.op(ciUnshare, []uint64{unix.CLONE_NEWCGROUP})
	}
}

func (p *ciProgram) op(code uint32, ints []uint64, strs ...string) {
	if len(ints) > ciMaxInts || len(strs) > ciMaxStrs {
		p.err = fmt.Errorf("op %d with %d ints, %d strings: %w", code, len(ints), len(strs), errNoCInit)
		return
	}
	p.b = binary.NativeEndian.AppendUint32(p.b, code)
	p.b = binary.NativeEndian.AppendUint32(p.b, uint32(len(ints)))
	for _, v := range ints {
		p.b = binary.NativeEndian.AppendUint64(p.b, v)
	}
	p.b = binary.NativeEndian.AppendUint32(p.b, uint32(len(strs)))
	for _, s := range strs {
		// C strings end at NUL; a path with one is the Go init's to refuse.
		if code != ciSeccomp && strings.IndexByte(s, 0) >= 0 {
			p.err = fmt.Errorf("NUL byte in %q: %w", s, errNoCInit)
		}
		p.b = binary.NativeEndian.AppendUint32(p.b, uint32(len(s)))
		p.b = append(p.b, s...)
	}
}

// bytes is the program with its header, ready for the sync socket.
func (p *ciProgram) bytes() []byte {
	out := binary.NativeEndian.AppendUint32(nil, ciMagic)
	out = binary.NativeEndian.AppendUint32(out, uint32(len(p.b)))
	return append(out, p.b...)
}

// cinitEligible reports whether the C init can set up the container planned here; it runs
// before the init is started, from the spec alone.
func cinitEligible(sp *specs.Spec, plan nsPlan, noProcess bool) bool {
	if os.Getenv("BERTH_INIT") == "go" || noProcess || sp.Process == nil || sp.Linux == nil || sp.Root == nil {
		return false
	}
	if plan.cloneFlags&unix.CLONE_NEWUSER != 0 || plan.joinPID || plan.joinMount || plan.cloneFlags&unix.CLONE_NEWNS == 0 {
		return false
	}
	if h := sp.Hooks; h != nil {
		//lint:ignore SA1019 Prestart is deprecated but still part of the spec.
		if len(h.Prestart)+len(h.CreateRuntime)+len(h.CreateContainer)+len(h.StartContainer) > 0 {
			return false
		}
	}
	if len(sp.Process.User.AdditionalGids) > ciMaxInts || isUserNS() {
		return false
	}
	// openat2 (Linux 5.6) resolves the container's paths in the kernel.
	fd, err := unix.Openat2(unix.AT_FDCWD, "/", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// cinitProgram builds the C init's program for a create. Checks the Go init makes inside the
// container on host-visible paths (bind sources) are made here, with the same messages.
func cinitProgram(cfg *initConfig) ([]byte, error) {
	sp := cfg.Spec
	p := sp.Process
	prog := &ciProgram{unshareCgroupNS: cfg.UnshareCgroupNS}
	prog.op(ciSetsid, nil)
	if !cfg.NoNewKeyring {
		prog.op(ciKeyring, nil, "_ses."+cfg.ID)
	}
	if cfg.NewMountNS {
		if err := cinitRootfs(prog, cfg); err != nil {
			return nil, err
		}
	}
	if cfg.NewUTSNS {
		if sp.Hostname != "" {
			prog.op(ciHostname, nil, sp.Hostname)
		}
		if sp.Domainname != "" {
			prog.op(ciDomainname, nil, sp.Domainname)
		}
	}
	if p.OOMScoreAdj != nil {
		prog.op(ciWrite, nil, "/proc/self/oom_score_adj", strconv.Itoa(*p.OOMScoreAdj), "set oom_score_adj")
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	prog.op(ciChdir, nil, cwd)
	if len(p.Args) == 0 {
		return nil, fmt.Errorf("process has no args: %w", errNoCInit)
	}
	pathEnv := defaultEnv
	for _, e := range p.Env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathEnv = v
		}
	}
	prog.op(ciLookpath, nil, p.Args[0], pathEnv)
	for _, a := range p.Args {
		prog.op(ciArg, nil, a)
	}
	for _, e := range p.Env {
		prog.op(ciEnv, nil, e)
	}
	prog.joinedCgroup()
	prog.op(ciCloseFDs, nil)
	prog.op(ciReady, nil)

	// Then finalizeAndExec's order, but before Start as runc has it: only the exec waits for
	// Start, so that the capabilities, the user switch and the seccomp load (0.7 ms) overlap
	// the daemon's work between create and start. The filter must let the init open and write
	// the exec fifo, as runc's must.
	for _, rl := range p.Rlimits {
		prog.op(ciRlimit, []uint64{uint64(rlimitTypes[rl.Type]), rl.Soft, rl.Hard}, rl.Type)
	}
	if p.NoNewPrivileges {
		prog.op(ciNNP, nil)
	}
	seccompOp := func() {
		if cfg.Seccomp != nil {
			prog.op(ciSeccomp, []uint64{uint64(cfg.Seccomp.Flags)}, string(cfg.Seccomp.Program))
		}
	}
	if cfg.Seccomp != nil {
		if err := checkBPF(cfg.Seccomp.Program); err != nil {
			return nil, fmt.Errorf("seccomp filter: %w", err)
		}
	}
	if !p.NoNewPrivileges {
		seccompOp()
	}
	caps, err := prepareCaps(p.Capabilities)
	if err != nil {
		return nil, err
	}
	mask := func(kind capability.CapType) uint64 {
		var m uint64
		for _, c := range capability.ListKnown() {
			if int(c) < 64 && caps.Get(kind, c) {
				m |= 1 << uint(c)
			}
		}
		return m
	}
	prog.op(ciCapBset, []uint64{mask(capability.BOUNDING)})
	prog.op(ciKeepCaps, []uint64{1})
	gids := make([]uint64, 0, len(p.User.AdditionalGids))
	for _, g := range p.User.AdditionalGids {
		gids = append(gids, uint64(g))
	}
	prog.op(ciSetgroups, gids)
	prog.op(ciSetgid, []uint64{uint64(p.User.GID)})
	prog.op(ciSetuid, []uint64{uint64(p.User.UID)})
	if p.User.Umask != nil {
		prog.op(ciUmask, []uint64{uint64(*p.User.Umask)})
	}
	prog.op(ciKeepCaps, []uint64{0})
	prog.op(ciCapset, []uint64{mask(capability.EFFECTIVE), mask(capability.PERMITTED), mask(capability.INHERITABLE)})
	prog.op(ciAmbient, []uint64{mask(capability.AMBIENT)})
	if p.NoNewPrivileges {
		seccompOp()
	}
	prog.op(ciWaitStart, nil)
	prog.op(ciExec, nil)
	if prog.err != nil {
		return nil, prog.err
	}
	return prog.bytes(), nil
}

// cinitRootfs is setupRootfs's twin.
func cinitRootfs(prog *ciProgram, cfg *initConfig) error {
	sp := cfg.Spec
	rootfs := cfg.Rootfs
	prog.op(ciMountHost, []uint64{unix.MS_SLAVE | unix.MS_REC}, "", "/", "", "")
	prog.op(ciMountHost, []uint64{unix.MS_BIND | unix.MS_REC}, rootfs, rootfs, "", "")
	prog.op(ciOpenRoot, nil, rootfs)
	devBound := false
	for _, m := range sp.Mounts {
		dest := filepath.Join("/", m.Destination)
		o := parseMountOptions(m.Options)
		if dest == "/dev" && (m.Type == "bind" || o.bind) {
			devBound = true
		}
		if err := cinitMountEntry(prog, cfg, m, dest, o); err != nil {
			return fmt.Errorf("mount %s: %w", m.Destination, err)
		}
	}
	if !devBound {
		if err := cinitDevices(prog, sp.Linux.Devices); err != nil {
			return err
		}
	}
	prog.op(ciPivot, nil, rootfs)
	keys := make([]string, 0, len(sp.Linux.Sysctl))
	for k := range sp.Linux.Sysctl {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if strings.Contains(k, "..") || strings.Contains(k, "/") {
			return fmt.Errorf("invalid sysctl %q", k)
		}
		prog.op(ciWrite, nil, filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/")), sp.Linux.Sysctl[k], "sysctl "+k)
	}
	if sp.Process.Terminal {
		var rows, cols uint64
		if sz := sp.Process.ConsoleSize; sz != nil {
			rows, cols = uint64(uint16(sz.Height)), uint64(uint16(sz.Width))
		}
		prog.op(ciConsole, []uint64{rows, cols, 1})
	}
	for _, p := range sp.Linux.MaskedPaths {
		prog.op(ciMask, nil, p)
	}
	for _, p := range sp.Linux.ReadonlyPaths {
		prog.op(ciRdonly, nil, p)
	}
	if sp.Root.Readonly {
		prog.op(ciRemountRO, nil, "/")
	}
	if sp.Linux.RootfsPropagation != "" {
		prop, err := rootfsPropagation(sp.Linux.RootfsPropagation)
		if err != nil {
			return err
		}
		prog.op(ciPropagate, []uint64{uint64(prop)}, "/")
	}
	return nil
}

// cinitMountEntry is mountEntry's twin.
func cinitMountEntry(prog *ciProgram, cfg *initConfig, m specs.Mount, dest string, o mountOpts) error {
	props := func(ints ...uint64) []uint64 {
		for _, p := range o.propagation {
			ints = append(ints, uint64(p))
		}
		return ints
	}
	// The C init makes missing mount points itself, below the root, creating the target of a
	// dangling symlink as the Go init does (securejoin, then MkdirAll).
	mk := func(dir bool) (uint64, error) {
		if dir {
			return ciMkDir, nil
		}
		return ciMkFile, nil
	}
	typ := m.Type
	if o.bind || typ == "bind" {
		src := m.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(cfg.Bundle, src)
		}
		fi, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("bind source: %w", err)
		}
		k, err := mk(fi.IsDir())
		if err != nil {
			return err
		}
		flags := uint64(unix.MS_BIND)
		if o.recursive {
			flags |= unix.MS_REC
		}
		prog.op(ciMount, props(flags, k, uint64(o.flags&^unix.MS_REMOUNT), 0), src, dest, "", "", "")
		return nil
	}
	if typ == "cgroup" || typ == "cgroup2" {
		return cinitCgroupMount(prog, cfg, dest, o, mk)
	}
	k, err := mk(true)
	if err != nil {
		return err
	}
	fallback, host := uint64(0), ""
	switch typ {
	case "sysfs":
		fallback, host = 1, "/sys"
	case "mqueue":
		fallback, host = 1, "/dev/mqueue"
	}
	prog.op(ciMount, props(uint64(o.flags), k, 0, fallback), m.Source, dest, typ, strings.Join(o.data, ","), host)
	return nil
}

// cinitCgroupMount is mountCgroup's twin.
func cinitCgroupMount(prog *ciProgram, cfg *initConfig, dest string, o mountOpts, mk func(bool) (uint64, error)) error {
	prog.joinedCgroup()
	cg := cfg.Cgroup
	k, err := mk(true)
	if err != nil {
		return err
	}
	ro := o.flags&unix.MS_RDONLY != 0
	if cg.V2 != "" {
		if cfg.UnshareCgroupNS {
			prog.op(ciMount, []uint64{uint64(o.flags), k, 0, 0}, "cgroup2", dest, "cgroup2", "", "")
			return nil
		}
		prog.op(ciMount, []uint64{unix.MS_BIND, k, uint64(o.flags), 0}, cg.v2Dir(), dest, "", "", "")
		return nil
	}
	prog.op(ciMount, []uint64{uint64(o.flags &^ unix.MS_RDONLY), k, 0, 0}, "tmpfs", dest, "tmpfs", "mode=755", "")
	ctls := make([]string, 0, len(cg.V1))
	for ctl := range cg.V1 {
		ctls = append(ctls, ctl)
	}
	slices.Sort(ctls)
	// The directories are made after the program is built (makeCgroup), every one of them or
	// the create fails.
	for _, ctl := range ctls {
		src := cg.v1Dir(ctl)
		var remount uint64
		if ro {
			remount = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
		}
		prog.op(ciMount, []uint64{unix.MS_BIND, ciMkDir, remount, 0}, src, filepath.Join(dest, ctl), "", "", "")
	}
	if ro {
		prog.op(ciMount, []uint64{unix.MS_REMOUNT | uint64(o.flags), ciMkNone, 0, 0}, "", dest, "", "mode=755", "")
	}
	return nil
}

// cinitDevices is createDevices's twin.
func cinitDevices(prog *ciProgram, devs []specs.LinuxDevice) error {
	for _, d := range containerDevices(devs) {
		n, err := nodeOf(d)
		if err != nil {
			return fmt.Errorf("create device %s: %w", d.Path, err)
		}
		prog.op(ciMknod, []uint64{uint64(n.mode), n.dev, uint64(n.uid), uint64(n.gid)}, filepath.Clean(d.Path))
	}
	for _, l := range devLinks() {
		var replace uint64
		if l[1] == "ptmx" {
			replace = 1
		}
		prog.op(ciSymlink, []uint64{replace}, l[0], "/dev/"+l[1])
	}
	return nil
}
