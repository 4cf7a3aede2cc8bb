package linux

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The runtime and "berth init" talk over a socketpair passed as fd 3, one JSON object per
// message. The parent only trusts the child's messages as much as the container setup itself:
// they carry status, never paths or commands to run.

const (
	initModeCreate = "create"
	initModeExec   = "exec"

	// Fixed descriptor numbers in the child (3 + index in ExtraFiles).
	fdSync    = 3
	fdFifo    = 4 // create: O_PATH descriptor of the exec fifo
	fdConsole = 5 // connected console socket, if any
)

// initConfig is the first message, parent to child.
type initConfig struct {
	Mode string      `json:"mode"`
	ID   string      `json:"id"`
	Spec *specs.Spec `json:"spec"`
	// Rootfs is the absolute host path of the root filesystem (create only).
	Rootfs string `json:"rootfs,omitempty"`
	// Bundle is the bundle directory (create only; hooks get it in their state).
	Bundle string `json:"bundle,omitempty"`
	// Console is true when fdConsole holds a connected console socket.
	Console bool `json:"console,omitempty"`
	// NewMountNS is true when the container gets a fresh mount namespace to set up.
	NewMountNS bool `json:"newMountNS,omitempty"`
	// NewUTSNS is true when hostname/domainname may be set.
	NewUTSNS bool `json:"newUTSNS,omitempty"`
	// UnshareCgroupNS asks the child for a new cgroup namespace once it sits in its cgroup.
	UnshareCgroupNS bool `json:"unshareCgroupNS,omitempty"`
	// NoNewKeyring keeps the creator's session keyring instead of joining a fresh one.
	NoNewKeyring bool `json:"noNewKeyring,omitempty"`
	// Cgroup lets the child mount its own cgroup directories at /sys/fs/cgroup on v1.
	Cgroup cgroupState `json:"cgroup"`
	// Seccomp is the spec's filter, compiled by the runtime (Spec.Linux.Seccomp is cleared):
	// the init only installs it.
	Seccomp *seccompBPF `json:"seccomp,omitempty"`
}

// syncMsg is every later message, in both directions.
type syncMsg struct {
	Type  string `json:"type"`
	Error string `json:"error,omitempty"`
}

const (
	msgReady    = "ready"    // child: setup done (create: now waiting on the fifo)
	msgError    = "error"    // child: setup failed, Error says why
	msgHooks    = "hooks"    // child: run prestart/createRuntime hooks now
	msgContinue = "continue" // parent: hooks done
)
