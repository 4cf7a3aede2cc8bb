package linux

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
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

func compileSeccomp(s *specs.LinuxSeccomp) (*seccompProgram, error) {
	var flags uintptr
	for _, fl := range s.Flags {
		switch fl {
		case specs.LinuxSeccompFlagLog:
			flags |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			flags |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		case specs.LinuxSeccompFlagWaitKillableRecv:
		default:
			return nil, fmt.Errorf("seccomp: unsupported flag %q", fl)
		}
	}
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
	const insnSize = 8 // struct sock_filter: u16 code, u8 jt, u8 jf, u32 k (native endian)
	if len(raw) == 0 || len(raw)%insnSize != 0 || len(raw)/insnSize > 0xffff {
		return nil, fmt.Errorf("compile seccomp filter: bad program length %d", len(raw))
	}
	p := &seccompProgram{flags: flags, insns: make([]unix.SockFilter, len(raw)/insnSize)}
	for i := range p.insns {
		b := raw[i*insnSize:]
		p.insns[i] = unix.SockFilter{
			Code: binary.NativeEndian.Uint16(b[0:2]), Jt: b[2], Jf: b[3],
			K: binary.NativeEndian.Uint32(b[4:8]),
		}
	}
	return p, nil
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
