// Package shim is the per-container supervisor. One `berth shim` process runs for each running
// container, in its own session, so that the container outlives the daemon: the shim is the
// container init's parent, holds its stdio (pipes or a pty), writes Docker's json-file log, reaps
// the init and records its exit status (and whether the kernel OOM-killed it) atomically, and
// serves start, kill, wait, attach and resize on a unix socket in its state directory.
//
// The shim ends soon after its container exits and its status is on disk; the daemon reads the
// status from the socket if it is listening at that moment, or from the exit file when it comes
// back after a restart. The shim must not touch daemon state (the metadata store, images,
// networks): it only knows its own container.
//
// Threat model: the container's process controls everything it writes to stdout and stderr and
// may try to stall the shim by never closing them; the shim never blocks the process's output on
// a slow attached client and bounds how long it drains output after exit.
package shim
