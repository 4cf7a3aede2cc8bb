package linux

import (
	"sort"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// Features describes what this runtime implements, in the OCI features format (`runc features`).
func Features() features.Features {
	yes, no := true, false
	var mountOpts []string
	for o := range mountFlagOpts {
		mountOpts = append(mountOpts, o)
	}
	for o := range propagationOpts {
		mountOpts = append(mountOpts, o)
	}
	mountOpts = append(mountOpts, "bind", "rbind")
	sort.Strings(mountOpts)
	var caps []string
	for _, c := range capability.ListKnown() {
		caps = append(caps, "CAP_"+upper(c.String()))
	}
	var ops []string
	for o := range seccompOps {
		ops = append(ops, string(o))
	}
	sort.Strings(ops)
	var nss []string
	for t := range namespaceFlags {
		nss = append(nss, string(t))
	}
	sort.Strings(nss)
	return features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks:         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
		MountOptions:  mountOpts,
		Linux: &features.Linux{
			Namespaces:   nss,
			Capabilities: caps,
			Cgroup:       &features.Cgroup{V1: &yes, V2: &yes, Systemd: &no, SystemdUser: &no},
			Seccomp: &features.Seccomp{
				Enabled:   &yes,
				Actions:   []string{"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"},
				Operators: ops,
				Archs:     []string{"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"},
				KnownFlags: []string{"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
					"SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"},
				SupportedFlags: []string{"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"},
			},
			Apparmor: &features.Apparmor{Enabled: &no},
			Selinux:  &features.Selinux{Enabled: &no},
		},
	}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
