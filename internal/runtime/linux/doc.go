// Package linux is berth's own OCI runtime: it turns an OCI bundle (config.json plus a root
// filesystem) into a running container using namespaces, pivot_root, mounts, cgroups (v1 and v2),
// capabilities, rlimits and seccomp, and it keeps the per-container state that runc keeps under its
// --root directory.
//
// The container's init is this same binary re-executed as "berth init" (see InitMain) in new
// namespaces; it finishes the setup from inside and execs the user's process once Start opens the
// container's exec fifo, like runc's. The init keeps its (close-on-exec) end of the fifo open, so
// Start sees EOF exactly when the user's process has replaced the init: no polling. Seccomp
// filters are compiled by the runtime, not the init, and cached by content under
// <Root>/@seccomp (compiling Docker's profile with libseccomp takes ~10 ms); the init only
// installs the BPF program it is sent.
//
// Trust boundaries: the image content (the root filesystem, including symlinks in it) and the
// bundle's config.json are controlled by whoever runs the container and must be treated as hostile
// input: paths from them are resolved inside the rootfs with securejoin before anything is mounted
// or created, and nothing from them is executed on the host except OCI hooks, which the spec
// defines as host commands chosen by the caller.
//
// This package must not know about images, snapshots, networks or the daemon's records: it only
// runs what a bundle describes. Networking arrives as a namespace path in the spec.
package linux
