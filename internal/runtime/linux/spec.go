package linux

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// This file holds the pure translations from OCI spec values to kernel values. Everything here is
// fed by the bundle's config.json (caller-controlled), so it validates and never panics.

// namespaceFlags maps OCI namespace types to clone(2) flags.
var namespaceFlags = map[specs.LinuxNamespaceType]uintptr{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.TimeNamespace:    unix.CLONE_NEWTIME,
}

// nsJoinOrder is the order in which existing namespaces are joined: the user namespace first
// (it grants the capabilities needed for the rest), the mount namespace last (joining it changes
// the root that later paths would be resolved against).
var nsJoinOrder = []specs.LinuxNamespaceType{
	specs.UserNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.NetworkNamespace,
	specs.PIDNamespace, specs.CgroupNamespace, specs.TimeNamespace, specs.MountNamespace,
}

// nsPlan is what to do about namespaces: which to create at clone time, which to unshare later
// (the cgroup namespace must be created after the process joined its cgroup), and which existing
// ones to join (as "flag:path" lines for the C constructor).
type nsPlan struct {
	cloneFlags   uintptr
	unshareCgns  bool
	join         []string
	joinPID      bool
	joinMount    bool
	hasNewUserNS bool
}

func planNamespaces(nss []specs.LinuxNamespace) (nsPlan, error) {
	var p nsPlan
	seen := map[specs.LinuxNamespaceType]string{}
	for _, ns := range nss {
		flag, ok := namespaceFlags[ns.Type]
		if !ok {
			return p, fmt.Errorf("unknown namespace type %q: %w", ns.Type, errdefs.ErrInvalidArgument)
		}
		if _, dup := seen[ns.Type]; dup {
			return p, fmt.Errorf("namespace %q listed twice: %w", ns.Type, errdefs.ErrInvalidArgument)
		}
		seen[ns.Type] = ns.Path
		if ns.Path != "" {
			if strings.ContainsRune(ns.Path, '\n') {
				return p, fmt.Errorf("namespace path %q: %w", ns.Path, errdefs.ErrInvalidArgument)
			}
			continue
		}
		switch ns.Type {
		case specs.CgroupNamespace:
			p.unshareCgns = true
		case specs.UserNamespace:
			p.hasNewUserNS = true
			p.cloneFlags |= flag
		default:
			p.cloneFlags |= flag
		}
	}
	for _, t := range nsJoinOrder {
		if path := seen[t]; path != "" {
			p.join = append(p.join, fmt.Sprintf("%d:%s", namespaceFlags[t], path))
			switch t {
			case specs.PIDNamespace:
				p.joinPID = true
			case specs.MountNamespace:
				p.joinMount = true
			}
		}
	}
	return p, nil
}

// mountOpts is a parsed OCI mount option list.
type mountOpts struct {
	flags       uintptr // flags for the mount itself
	clearFlags  uintptr // flags explicitly turned off (rw, suid, ...)
	propagation []uintptr
	data        []string
	bind        bool
	recursive   bool
}

var mountFlagOpts = map[string]struct {
	clear bool
	flag  uintptr
}{
	"async": {true, unix.MS_SYNCHRONOUS}, "atime": {true, unix.MS_NOATIME},
	"defaults": {false, 0}, "dev": {true, unix.MS_NODEV}, "diratime": {true, unix.MS_NODIRATIME},
	"dirsync": {false, unix.MS_DIRSYNC}, "exec": {true, unix.MS_NOEXEC},
	"mand": {false, unix.MS_MANDLOCK}, "noatime": {false, unix.MS_NOATIME},
	"nodev": {false, unix.MS_NODEV}, "nodiratime": {false, unix.MS_NODIRATIME},
	"noexec": {false, unix.MS_NOEXEC}, "nomand": {true, unix.MS_MANDLOCK},
	"norelatime": {true, unix.MS_RELATIME}, "nostrictatime": {true, unix.MS_STRICTATIME},
	"nosuid": {false, unix.MS_NOSUID}, "relatime": {false, unix.MS_RELATIME},
	"remount": {false, unix.MS_REMOUNT}, "ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"strictatime": {false, unix.MS_STRICTATIME}, "suid": {true, unix.MS_NOSUID},
	"sync": {false, unix.MS_SYNCHRONOUS},
}

var propagationOpts = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// parseMountOptions splits OCI mount options into mount(2) flags, propagation changes and the
// filesystem-specific data string. Unknown options are passed to the filesystem as data, as runc
// does.
func parseMountOptions(options []string) mountOpts {
	var m mountOpts
	for _, o := range options {
		switch o {
		case "bind":
			m.bind = true
			continue
		case "rbind":
			m.bind, m.recursive = true, true
			continue
		}
		if f, ok := mountFlagOpts[o]; ok {
			if f.clear {
				m.flags &^= f.flag
				m.clearFlags |= f.flag
			} else {
				m.flags |= f.flag
			}
			continue
		}
		if p, ok := propagationOpts[o]; ok {
			m.propagation = append(m.propagation, p)
			continue
		}
		if o == "" {
			continue
		}
		m.data = append(m.data, o)
	}
	return m
}

// rootfsPropagation maps the spec's linux.rootfsPropagation to mount flags; the default is
// rslave, so host mount events reach the container but not the other way round.
func rootfsPropagation(s string) (uintptr, error) {
	if s == "" {
		return unix.MS_SLAVE | unix.MS_REC, nil
	}
	p, ok := propagationOpts[s]
	if !ok {
		return 0, fmt.Errorf("rootfsPropagation %q: %w", s, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// ParseSignal accepts a signal the way runc's kill does: a number ("9"), a name ("KILL") or a
// name with the SIG prefix ("SIGKILL"), case-insensitively, including RTMIN+n / RTMAX-n.
func ParseSignal(s string) (syscall.Signal, error) {
	if s == "" {
		return 0, fmt.Errorf("empty signal: %w", errdefs.ErrInvalidArgument)
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("invalid signal %q: %w", s, errdefs.ErrInvalidArgument)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	for _, base := range []struct {
		prefix string
		sig    int
		dir    int
	}{{"SIGRTMIN+", 34, 1}, {"SIGRTMAX-", 64, -1}} {
		if rest, ok := strings.CutPrefix(name, base.prefix); ok {
			n, err := strconv.Atoi(rest)
			if err == nil && n >= 0 && n <= 30 {
				return syscall.Signal(base.sig + base.dir*n), nil
			}
		}
	}
	switch name {
	case "SIGRTMIN":
		return 34, nil
	case "SIGRTMAX":
		return 64, nil
	}
	return 0, fmt.Errorf("unknown signal %q: %w", s, errdefs.ErrInvalidArgument)
}

var rlimitTypes = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE,
	"RLIMIT_LOCKS": unix.RLIMIT_LOCKS, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC,
	"RLIMIT_RSS": unix.RLIMIT_RSS, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// clampRlimits validates the spec's rlimits and lowers any limit above the current hard limit to
// it: raising a hard limit needs CAP_SYS_RESOURCE, which berth may not have (it may itself run in
// a container), and a container must not fail to start over that. It returns the adjusted list and
// one message per clamped limit for the caller to log.
func clampRlimits(in []specs.POSIXRlimit, currentHard func(resource int) (uint64, error)) ([]specs.POSIXRlimit, []string, error) {
	out := make([]specs.POSIXRlimit, 0, len(in))
	var warnings []string
	seen := map[string]bool{}
	for _, rl := range in {
		if _, ok := rlimitTypes[rl.Type]; !ok {
			return nil, nil, fmt.Errorf("unknown rlimit %q: %w", rl.Type, errdefs.ErrInvalidArgument)
		}
		if seen[rl.Type] {
			return nil, nil, fmt.Errorf("rlimit %q listed twice: %w", rl.Type, errdefs.ErrInvalidArgument)
		}
		seen[rl.Type] = true
		if rl.Soft > rl.Hard {
			return nil, nil, fmt.Errorf("rlimit %s: soft limit %d above hard limit %d: %w", rl.Type, rl.Soft, rl.Hard, errdefs.ErrInvalidArgument)
		}
		hard, err := currentHard(rlimitTypes[rl.Type])
		if err != nil {
			return nil, nil, fmt.Errorf("read current %s: %w", rl.Type, err)
		}
		if rl.Hard > hard {
			warnings = append(warnings, fmt.Sprintf("rlimit %s hard %d above the runtime's hard limit %d: clamped", rl.Type, rl.Hard, hard))
			rl.Hard = hard
			rl.Soft = min(rl.Soft, hard)
		}
		out = append(out, rl)
	}
	return out, warnings, nil
}

// parseCaps turns OCI capability names ("CAP_NET_RAW") into capability values. Names this
// library does not know are returned separately so the caller can log them; runc ignores
// capabilities the kernel lacks in the same way.
func parseCaps(names []string) (known []capability.Cap, unknown []string) {
	for _, n := range names {
		want := strings.ToLower(strings.TrimPrefix(strings.ToUpper(n), "CAP_"))
		found := false
		for _, c := range capability.ListKnown() {
			if c.String() == want {
				known = append(known, c)
				found = true
				break
			}
		}
		if !found {
			unknown = append(unknown, n)
		}
	}
	return known, unknown
}

// containerDevices is what a container's /dev gets: Docker's default devices, then the spec's.
func containerDevices(devs []specs.LinuxDevice) []specs.LinuxDevice {
	mode := os.FileMode(0o666)
	zero := uint32(0)
	all := make([]specs.LinuxDevice, 0, len(defaultDevices)+len(devs))
	for _, d := range defaultDevices {
		all = append(all, specs.LinuxDevice{Path: "/dev/" + d.name, Type: "c", Major: int64(d.major), Minor: int64(d.minor), FileMode: &mode, UID: &zero, GID: &zero})
	}
	return append(all, devs...)
}

// deviceNode is a spec device as mknod(2) and lchown(2) take it.
type deviceNode struct {
	mode     uint32 // type and permissions
	dev      uint64
	uid, gid int
}

func nodeOf(d specs.LinuxDevice) (deviceNode, error) {
	if !filepath.IsAbs(d.Path) {
		return deviceNode{}, fmt.Errorf("device path must be absolute")
	}
	var typ uint32
	switch d.Type {
	case "c", "u":
		typ = unix.S_IFCHR
	case "b":
		typ = unix.S_IFBLK
	case "p":
		typ = unix.S_IFIFO
	default:
		return deviceNode{}, fmt.Errorf("unknown device type %q", d.Type)
	}
	n := deviceNode{mode: typ | 0o666, dev: unix.Mkdev(uint32(d.Major), uint32(d.Minor))}
	if d.FileMode != nil {
		n.mode = typ | uint32(d.FileMode.Perm())
	}
	if d.UID != nil {
		n.uid = int(*d.UID)
	}
	if d.GID != nil {
		n.gid = int(*d.GID)
	}
	return n, nil
}

// devLinks are the symlinks every container's /dev gets: {target, name}. /dev/ptmx replaces
// whatever is there.
func devLinks() [][2]string {
	return [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"}}
}
