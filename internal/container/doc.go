// Package container is the model of a berth container: its configuration as the Docker API gives
// it, and the pure translation of that configuration into an OCI runtime spec with Docker's
// security defaults (capabilities, seccomp, masked and read-only /proc paths, no-new-privileges,
// device rules). It performs no I/O: callers resolve users, load seccomp profiles and prepare the
// root filesystem, then hand the results in.
//
// What an attacker controls here: the image's config (env, user, entrypoint) and, for a user of
// the API, every field of the create request. Neither may widen the container's privileges beyond
// what the request explicitly asks for (--privileged, --cap-add, --security-opt).
package container
