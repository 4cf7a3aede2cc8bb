package linux

/*
#cgo CFLAGS: -std=gnu11 -Wall -Wextra -O2
#include "cinit.h"
*/
import "C"

// cOpcodes lists cinit.h's operation codes in order, for TestCInitOpcodes.
func cOpcodes() []uint32 {
	return []uint32{
		C.CI_SETSID, C.CI_KEYRING, C.CI_UNSHARE, C.CI_MOUNT_HOST, C.CI_OPEN_ROOT, C.CI_MOUNT,
		C.CI_MKNOD, C.CI_SYMLINK, C.CI_PIVOT, C.CI_WRITE, C.CI_MASK, C.CI_RDONLY, C.CI_REMOUNT_RO,
		C.CI_PROPAGATE, C.CI_HOSTNAME, C.CI_DOMAINNAME, C.CI_CONSOLE, C.CI_CHDIR, C.CI_LOOKPATH,
		C.CI_ARG, C.CI_ENV, C.CI_CLOSEFDS, C.CI_READY, C.CI_RLIMIT, C.CI_NNP, C.CI_SECCOMP,
		C.CI_CAPBSET, C.CI_KEEPCAPS, C.CI_SETGROUPS, C.CI_SETGID, C.CI_SETUID, C.CI_UMASK,
		C.CI_CAPSET, C.CI_AMBIENT, C.CI_EXEC, C.CI_JOINED, C.CI_WAIT_START, C.CI_MAX,
	}
}

// cMkKinds lists cinit.h's mount-point kinds.
func cMkKinds() []uint64 { return []uint64{C.CI_MK_NONE, C.CI_MK_DIR, C.CI_MK_FILE} }

// cMagic is cinit.h's program magic.
func cMagic() uint32 { return C.BERTH_CINIT_MAGIC }
