package daemon

import (
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// execRootOnTmpfs puts the exec root on a tmpfs when it is not on one already. Its contents
// (runtime state, shim sockets, FIFOs, network namespace mount points) live as long as the boot,
// as /run's do, and are made and deleted for every container: on a disk filesystem each costs
// an inode allocation (expensive on some: see docs/benchmarks.md). Where /run is a tmpfs, as
// on every systemd host, nothing is done. The mount outlives the daemon, so that shims and
// running containers keep their sockets and state across a daemon restart.
//
// It is an optimisation, never a condition: the exec root stays where it is when it already
// holds files (a daemon of an earlier version ran on the disk), when the daemon runs in a mount
// namespace of its own (clients and later daemons in the host's would not see the mount), and
// when the mount fails (no right to mount).
func execRootOnTmpfs(dir string, log *slog.Logger) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC {
		return
	}
	names, err := readDirNames(dir)
	if err != nil || len(names) > 0 {
		log.Info("exec root left on its filesystem: it is not empty", "exec-root", dir, "err", err)
		return
	}
	if !inHostMountNS() {
		log.Info("exec root left on its filesystem: the daemon runs in a mount namespace of its own", "exec-root", dir)
		return
	}
	// A tenth of memory at most, as systemd bounds /run; the state is a few KiB per container.
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0711,size=10%"); err != nil {
		log.Info("exec root left on its filesystem: mounting a tmpfs failed", "exec-root", dir, "err", err)
		return
	}
	// Network namespaces are bind-mounted under the exec root: those mounts must not propagate
	// to (and be pinned by) other mount namespaces.
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		log.Info("exec root left on its filesystem: making the tmpfs private failed", "exec-root", dir, "err", err)
		return
	}
	_ = os.Chmod(dir, 0o711)
	log.Info("mounted a tmpfs on the exec root", "exec-root", dir)
}

// inHostMountNS reports whether this process shares the mount namespace of PID 1. When PID 1's
// cannot be read (a sandbox that denies it even to root) it cannot tell, and says yes: the
// case it guards against is a daemon that a service manager started in a namespace of its own.
func inHostMountNS() bool {
	var self, init unix.Stat_t
	if unix.Stat("/proc/self/ns/mnt", &self) != nil {
		return false
	}
	if unix.Stat("/proc/1/ns/mnt", &init) != nil {
		return true
	}
	return self.Ino == init.Ino && self.Dev == init.Dev
}
