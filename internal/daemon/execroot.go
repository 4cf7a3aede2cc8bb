package daemon

import (
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// execRootOnTmpfs puts the exec root on a tmpfs when it is not on one already. Its contents
// (runtime state, shim sockets, FIFOs, network namespace mount points) live as long as the boot,
// as /run's do, and are made and deleted for every container: on a disk filesystem each costs
// an inode allocation (expensive on some: see docs/benchmarks.md). Where /run is a tmpfs, as
// on every systemd host, nothing is done. The mount outlives the daemon, so that shims and
// running containers keep their sockets and state across a daemon restart; an exec root that
// already holds files (a daemon of an earlier version ran on the disk) is left as it is.
func execRootOnTmpfs(dir string, log *slog.Logger) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("exec root %s: %w", dir, err)
	}
	if st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC {
		return nil
	}
	if names, err := readDirNames(dir); err != nil || len(names) > 0 {
		log.Info("exec root is not on a tmpfs and holds files; left on its filesystem", "exec-root", dir)
		return nil
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0711"); err != nil {
		return fmt.Errorf("mount a tmpfs on the exec root %s: %w", dir, err)
	}
	// Network namespaces are bind-mounted under the exec root: those mounts must not propagate
	// to (and be pinned by) other mount namespaces.
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		return fmt.Errorf("make the exec root %s private: %w", dir, err)
	}
	log.Info("mounted a tmpfs on the exec root", "exec-root", dir)
	_ = os.Chmod(dir, 0o711)
	return nil
}
