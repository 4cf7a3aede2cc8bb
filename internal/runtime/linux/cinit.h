// The C container init: see cinit.c. The operation codes are shared with cinit_prog.go, which
// builds the program the init runs; TestCInitOpcodes checks that both sides agree.
#ifndef BERTH_CINIT_H
#define BERTH_CINIT_H

#define BERTH_CINIT_ENV "_BERTH_CINIT"
#define BERTH_CINIT_MAGIC 0x31494342u /* "BCI1" */

enum {
	CI_SETSID = 1,  // setsid()
	CI_KEYRING,     // s0: join a fresh session keyring named s0
	CI_UNSHARE,     // i0: unshare(i0)
	CI_MOUNT_HOST,  // i0 flags; s0 src, s1 target, s2 fstype, s3 data: mount(2) on host paths
	CI_OPEN_ROOT,   // s0: the rootfs (already a mount point); later paths resolve below it
	CI_MOUNT,       // see op_mount
	CI_MKNOD,       // s0 path in root; i0 mode, i1 dev, i2 uid, i3 gid
	CI_SYMLINK,     // s0 target, s1 link path in root; i0: replace an existing entry
	CI_PIVOT,       // s0: the rootfs; pivot_root into it and detach the old root
	CI_WRITE,       // s0 path, s1 content, s2 what (after pivot_root: sysctls, oom_score_adj)
	CI_MASK,        // s0: hide the path (/dev/null over files, read-only tmpfs over dirs)
	CI_RDONLY,      // s0: bind the path read-only onto itself
	CI_REMOUNT_RO,  // s0: remount the mount at s0 read-only, keeping its locked flags
	CI_PROPAGATE,   // i0 flags; s0 path
	CI_HOSTNAME,    // s0
	CI_DOMAINNAME,  // s0
	CI_CONSOLE,     // i0 rows, i1 cols (0: leave), i2: bind at /dev/console
	CI_CHDIR,       // s0
	CI_LOOKPATH,    // s0 file, s1 PATH: resolve the executable, before ready
	CI_ARG,         // s0: next argv entry
	CI_ENV,         // s0: next environment entry
	CI_CLOSEFDS,    // mark every descriptor above 2 close-on-exec
	CI_READY,       // report ready
	CI_RLIMIT,      // i0 resource, i1 soft, i2 hard; s0 its name
	CI_NNP,         // set no_new_privs
	CI_SECCOMP,     // i0 flags; s0 the BPF program (struct sock_filter array)
	CI_CAPBSET,     // i0: bounding set to keep (bit n = capability n); drop the rest
	CI_KEEPCAPS,    // i0: PR_SET_KEEPCAPS value
	CI_SETGROUPS,   // i0..: supplementary groups; i0 count is the op's int count
	CI_SETGID,      // i0
	CI_SETUID,      // i0
	CI_UMASK,       // i0
	CI_CAPSET,      // i0 effective, i1 permitted, i2 inheritable
	CI_AMBIENT,     // i0: ambient set
	CI_EXEC,        // execve the looked-up path with the ARG/ENV lists
	CI_JOINED,      // wait until the runtime moved this process into its cgroup (one byte)
	CI_WAIT_START,  // wait for Start on the exec fifo (after CI_READY)
	CI_MAX
};

// Flags of CI_MOUNT's i1.
enum {
	CI_MK_NONE = 0,
	CI_MK_DIR = 1,
	CI_MK_FILE = 2,
};

void berth_cinit(void);
void berth_cinit_direct(const char *nsenter);
void berth_join_namespaces(const char *spec);

#endif
