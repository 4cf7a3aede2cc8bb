// Package shim is the per-container supervisor. One `berth shim` process runs for each running
// container, in its own session, so that the container outlives the daemon: the shim is the
// container init's parent, holds its stdio (pipes or a pty), writes Docker's json-file log, reaps
// the init and records its exit status (and whether the kernel OOM-killed it) atomically, and
// serves start, kill, wait, attach, resize and exec on a unix socket in its state directory.
//
// The shim runs in two stages in one process. Setup is Go (Shim: Listen, Create): it binds the
// socket, makes the pipes or console socket and creates the container through the runtime. Then
// Handover re-executes the same binary with the same command line and _BERTH_CSHIM in the
// environment, keeping open only the descriptors the steady state needs; a C constructor
// (cshim.c) takes over before the Go runtime starts and serves until the end, so that an idle
// shim costs about a megabyte instead of a Go runtime's twenty. What needs the runtime after
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
