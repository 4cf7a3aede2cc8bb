package linux

/*
#cgo CFLAGS: -Wall
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cinit.h"

// berth_nsenter runs before the Go runtime starts any thread, which is the only time a process
// may join a mount or user namespace with setns(2). It is inert unless the parent set
// _BERTH_NSENTER, a newline-separated list of "flag:path" entries (flag is the CLONE_NEW* value
// in decimal), already ordered by the parent. When _BERTH_NSFORK names a file descriptor the
// process also forks once more after joining, so that the child really is inside the joined PID
// namespace; the intermediate writes the child's PID (as seen from the caller's namespace) to
// that descriptor and exits.
//
// Only the runtime sets these variables; the container's process never sees them because the
// Go side builds the user process's environment from the spec alone. They count only for
// `berth init`: the binary is also a container's --init, whose environment is the container's
// (glibc passes main's arguments to constructors).
__attribute__((constructor)) static void berth_nsenter(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc < 2 || strcmp(argv[1], "init") != 0) {
		return;
	}
	const char *spec = getenv("_BERTH_NSENTER");
	if (spec == NULL || *spec == '\0') {
		berth_cinit();
		return;
	}
	berth_join_namespaces(spec);
	const char *forkfd = getenv("_BERTH_NSFORK");
	if (forkfd != NULL && *forkfd != '\0') {
		int fd = atoi(forkfd);
		pid_t pid = fork();
		if (pid < 0) {
			fprintf(stderr, "berth nsenter: fork: %s\n", strerror(errno));
			_exit(1);
		}
		if (pid > 0) {
			dprintf(fd, "%d\n", (int)pid);
			_exit(0);
		}
		close(fd);
	}
	// The C init, when asked for, runs once the namespaces are joined.
	berth_cinit();
}
*/
import "C"

// Environment variables read by the C constructor above.
const (
	envNSEnter = "_BERTH_NSENTER"
	envNSFork  = "_BERTH_NSFORK"
)
