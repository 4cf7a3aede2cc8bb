// Package shim is the per-container supervisor. One `berth shim` process runs for each running
// container, in its own session, so that the container outlives the daemon: the shim is the
// container init's parent, holds its stdio (pipes or a pty), writes Docker's json-file log, reaps
// the init and records its exit status (and whether the kernel OOM-killed it) atomically, and
// serves start, kill, wait, attach, resize and exec on a unix socket in its state directory.
//
// A shim starts in one of two ways. Docker's usual container goes to a spare shim: a process
// the daemon started ahead of need (SpareArgs, SpareEnv) that is C from its first instruction
// (cshim.c's constructor). The daemon prepares the container with the runtime in its own
// process (linux.Prepared) and hands the spare a SpareJob; the spare binds the socket, makes
// the pipes or console socket, starts the container's C init, sends it its program, moves it
// into its cgroup, writes the runtime's state file and serves. Every other container (a user
// namespace, BERTH_INIT=go...) gets a `berth shim` whose setup is Go (Shim: Listen, Create,
// through the runtime); Handover then re-executes the same binary with the same command line and
// _BERTH_CSHIM in the environment, keeping open only the descriptors the steady state needs, and
// the same C constructor takes over before the Go runtime starts. Either way the steady state is
// C and serves until the end, so that an idle shim costs about a megabyte instead of a Go
// runtime's twenty. What needs the runtime after
// setup (exec, killing every process, delete) runs in short-lived `berth shim-helper` children
// (HelperMain). The daemon talks to the shim only through Client; the wire format between
// Client and cshim.c is theirs alone.
//
// The shim ends soon after its container exits and its status is on disk; the daemon reads the
// status from the socket if it is listening at that moment, or from the exit file when it comes
// back after a restart. The shim must not touch daemon state (the metadata store, images,
// networks): it only knows its own container. OCI hooks are not run by the steady state (the
// daemon never sets them).
//
// Threat model: the container's process controls everything it writes to stdout and stderr and
// may try to stall the shim by never closing them; the shim never blocks the process's output on
// a slow attached client (one that lags by more than 4 MiB is dropped) and bounds how long it
// drains output after exit.
package shim
