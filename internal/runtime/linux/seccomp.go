package linux

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"unsafe"

	profiles "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// DefaultCapabilities is Docker's default capability set for a container process.
func DefaultCapabilities() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
		"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
	}
}

// DefaultSeccomp returns Docker's default seccomp profile (github.com/moby/profiles/seccomp)
// resolved for a process with Docker's default capabilities on this architecture. It returns nil
// only if the embedded profile cannot be resolved, which would be a build defect.
func DefaultSeccomp() *specs.LinuxSeccomp {
	caps := DefaultCapabilities()
	rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{
		Bounding: caps, Effective: caps, Permitted: caps,
	}}}
	s, err := profiles.GetDefaultProfile(rs)
	if err != nil {
		return nil
	}
	return s
}

func seccompAction(a specs.LinuxSeccompAction, errnoRet *uint) (libseccomp.ScmpAction, error) {
	ret := int16(syscall.EPERM)
	if errnoRet != nil {
		ret = int16(*errnoRet)
	}
	switch a {
	case specs.ActKill, specs.ActKillThread:
		return libseccomp.ActKillThread, nil
	case specs.ActKillProcess:
		return libseccomp.ActKillProcess, nil
	case specs.ActTrap:
		return libseccomp.ActTrap, nil
	case specs.ActErrno:
		return libseccomp.ActErrno.SetReturnCode(ret), nil
	case specs.ActTrace:
		return libseccomp.ActTrace.SetReturnCode(ret), nil
	case specs.ActAllow:
		return libseccomp.ActAllow, nil
	case specs.ActLog:
		return libseccomp.ActLog, nil
	}
	return libseccomp.ActInvalid, fmt.Errorf("unsupported seccomp action %q", a)
}

var seccompOps = map[specs.LinuxSeccompOperator]libseccomp.ScmpCompareOp{
	specs.OpNotEqual: libseccomp.CompareNotEqual, specs.OpLessThan: libseccomp.CompareLess,
	specs.OpLessEqual: libseccomp.CompareLessOrEqual, specs.OpEqualTo: libseccomp.CompareEqual,
	specs.OpGreaterEqual: libseccomp.CompareGreaterEqual, specs.OpGreaterThan: libseccomp.CompareGreater,
	specs.OpMaskedEqual: libseccomp.CompareMaskedEqual,
}

// buildSeccomp compiles the spec's seccomp section into a libseccomp filter (not yet loaded).
// Syscall names unknown on this architecture are skipped, as runc does, so one profile serves
// every kernel.
func buildSeccomp(s *specs.LinuxSeccomp) (*libseccomp.ScmpFilter, error) {
	if s.ListenerPath != "" {
		return nil, fmt.Errorf("seccomp listenerPath is not supported")
	}
	def, err := seccompAction(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		return nil, err
	}
	f, err := libseccomp.NewFilter(def)
	if err != nil {
		return nil, fmt.Errorf("new seccomp filter: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Release()
		}
	}()
	if err := f.SetNoNewPrivsBit(false); err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	for _, a := range s.Architectures {
		arch, err := libseccomp.GetArchFromString(strings.ToLower(strings.TrimPrefix(string(a), "SCMP_ARCH_")))
		if err != nil {
			return nil, fmt.Errorf("seccomp architecture %q: %w", a, err)
		}
		if err := f.AddArch(arch); err != nil {
			return nil, fmt.Errorf("seccomp add architecture %q: %w", a, err)
		}
	}
	for _, sc := range s.Syscalls {
		act, err := seccompAction(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, err
		}
		if act == def {
			continue // libseccomp rejects rules that repeat the default action
		}
		var conds []libseccomp.ScmpCondition
		sameArg := false
		seen := map[uint]bool{}
		for _, a := range sc.Args {
			op, ok := seccompOps[a.Op]
			if !ok {
				return nil, fmt.Errorf("seccomp: unknown operator %q", a.Op)
			}
			vals := []uint64{a.Value}
			if op == libseccomp.CompareMaskedEqual {
				vals = append(vals, a.ValueTwo)
			}
			c, err := libseccomp.MakeCondition(a.Index, op, vals...)
			if err != nil {
				return nil, fmt.Errorf("seccomp condition: %w", err)
			}
			sameArg = sameArg || seen[a.Index]
			seen[a.Index] = true
			conds = append(conds, c)
		}
		for _, name := range sc.Names {
			call, err := libseccomp.GetSyscallFromName(name)
			if err != nil {
				continue
			}
			switch {
			case len(conds) == 0:
				err = f.AddRule(call, act)
			case sameArg:
				// Several conditions on one argument cannot be ANDed by libseccomp; like runc,
				// add one rule per condition.
				for _, c := range conds {
					if err = f.AddRuleConditional(call, act, []libseccomp.ScmpCondition{c}); err != nil {
						break
					}
				}
			default:
				err = f.AddRuleConditional(call, act, conds)
			}
			if err != nil {
				return nil, fmt.Errorf("seccomp rule for %s: %w", name, err)
			}
		}
	}
	ok = true
	return f, nil
}

// seccompProgram is a compiled filter, ready to install without allocating: by the time it is
// loaded the process may run under the container's rlimits (RLIMIT_AS, RLIMIT_DATA), where
// libseccomp's own loader can fail for lack of memory.
type seccompProgram struct {
	insns []unix.SockFilter
	flags uintptr
}

// seccompBPF is a filter compiled by the runtime and shipped to the init in its config: the raw
// program (struct sock_filter array, native endian) and the seccomp(2) flags.
type seccompBPF struct {
	Program []byte  `json:"program"`
	Flags   uintptr `json:"flags,omitempty"`
}

func seccompFlags(s *specs.LinuxSeccomp) (uintptr, error) {
	var flags uintptr
	for _, fl := range s.Flags {
		switch fl {
		case specs.LinuxSeccompFlagLog:
			flags |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			flags |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		case specs.LinuxSeccompFlagWaitKillableRecv:
		default:
			return 0, fmt.Errorf("seccomp: unsupported flag %q", fl)
		}
	}
	return flags, nil
}

// compileSeccompBPF turns the spec's seccomp section into a BPF program with libseccomp.
// Compiling Docker's default profile takes about 10 ms, which is why the runtime caches the
// result (seccompCache) and compiles in the runtime rather than in the container's init.
func compileSeccompBPF(s *specs.LinuxSeccomp) ([]byte, error) {
	f, err := buildSeccomp(s)
	if err != nil {
		return nil, err
	}
	defer f.Release()
	// ExportBPFMem needs libseccomp 2.6; a memfd works with every version.
	fd, err := unix.MemfdCreate("seccomp-bpf", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("compile seccomp filter: memfd: %w", err)
	}
	mf := os.NewFile(uintptr(fd), "seccomp-bpf")
	defer mf.Close()
	if err := f.ExportBPF(mf); err != nil {
		return nil, fmt.Errorf("compile seccomp filter: %w", err)
	}
	if _, err := mf.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("compile seccomp filter: %w", err)
	}
	raw, err := io.ReadAll(mf)
	if err != nil {
		return nil, fmt.Errorf("compile seccomp filter: %w", err)
	}
	if err := checkBPF(raw); err != nil {
		return nil, fmt.Errorf("compile seccomp filter: %w", err)
	}
	return raw, nil
}

const bpfInsnSize = 8 // struct sock_filter: u16 code, u8 jt, u8 jf, u32 k (native endian)

func checkBPF(raw []byte) error {
	if len(raw) == 0 || len(raw)%bpfInsnSize != 0 || len(raw)/bpfInsnSize > 0xffff {
		return fmt.Errorf("bad program length %d", len(raw))
	}
	return nil
}

// compileSeccomp compiles s without a cache (tests, and callers without a runtime root).
func compileSeccomp(s *specs.LinuxSeccomp) (*seccompProgram, error) {
	flags, err := seccompFlags(s)
	if err != nil {
		return nil, err
	}
	raw, err := compileSeccompBPF(s)
	if err != nil {
		return nil, err
	}
	return (&seccompBPF{Program: raw, Flags: flags}).program()
}

// program decodes the shipped filter into the form load installs.
func (b *seccompBPF) program() (*seccompProgram, error) {
	if err := checkBPF(b.Program); err != nil {
		return nil, fmt.Errorf("seccomp filter: %w", err)
	}
	raw := b.Program
	p := &seccompProgram{flags: b.Flags, insns: make([]unix.SockFilter, len(raw)/bpfInsnSize)}
	for i := range p.insns {
		b := raw[i*bpfInsnSize:]
		p.insns[i] = unix.SockFilter{
			Code: binary.NativeEndian.Uint16(b[0:2]), Jt: b[2], Jf: b[3],
			K: binary.NativeEndian.Uint32(b[4:8]),
		}
	}
	return p, nil
}

// seccompCacheDir is where compiled filters are kept, below the runtime root. Its name holds a
// character container IDs may not contain, so it can never be taken for a container.
const seccompCacheDir = "@seccomp"

// seccompFor compiles the spec's filter, or reads it from the cache under r.Root. The cache is
// keyed by a hash of the profile, the architecture, the kernel and libseccomp's version, so an
// entry is only reused for the exact input that produced it; the directory is as private as
// the containers' state (0700, root's), which already decides what the inits run.
func (r *Runtime) seccompFor(s *specs.LinuxSeccomp) (*seccompBPF, error) {
	flags, err := seccompFlags(s)
	if err != nil {
		return nil, err
	}
	key, err := seccompCacheKey(s)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(r.Root, seccompCacheDir, key)
	if raw, err := os.ReadFile(path); err == nil && checkBPF(raw) == nil {
		return &seccompBPF{Program: raw, Flags: flags}, nil
	}
	raw, err := compileSeccompBPF(s)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
		// A failed cache write only costs the next container a compile.
		if err := writeFileAtomic(path, raw, 0o600); err != nil {
			r.log().Debug("cache seccomp filter", "err", err)
		}
	}
	return &seccompBPF{Program: raw, Flags: flags}, nil
}

func seccompCacheKey(s *specs.LinuxSeccomp) (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("encode seccomp profile: %w", err)
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	maj, mnr, mic := libseccomp.GetLibraryVersion()
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d.%d.%d\x00", runtime.GOARCH, unix.ByteSliceToString(uts.Release[:]), maj, mnr, mic)
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// load installs the filter on the calling thread (the thread that will exec).
func (p *seccompProgram) load() error {
	prog := unix.SockFprog{Len: uint16(len(p.insns)), Filter: &p.insns[0]}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, p.flags, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(p)
	if errno != 0 {
		return fmt.Errorf("load seccomp filter: %w", errno)
	}
	return nil
}
