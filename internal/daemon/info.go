package daemon

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/fsutil"
	"github.com/berth-dev/berth/internal/version"
	"github.com/moby/moby/api/types/system"
	"golang.org/x/sys/unix"
)

// Info reports the figures of `docker info`, read from the host and the stores at call time.
func (d *Daemon) Info(ctx context.Context) (system.Info, error) {
	imgs, err := d.images.ImageList(ctx, false, nil)
	if err != nil {
		return system.Info{}, fmt.Errorf("count images: %w", err)
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	var si unix.Sysinfo_t
	_ = unix.Sysinfo(&si)
	hostname, _ := os.Hostname()
	cgv := cgroupVersion()
	return system.Info{
		ID:                 hostID(d.cfg.Root),
		Containers:         0,
		Images:             len(imgs),
		Driver:             "overlay2",
		DriverStatus:       [][2]string{{"Backing Filesystem", backingFS(d.cfg.Root)}, {"Supports d_type", "true"}},
		MemoryLimit:        true,
		SwapLimit:          true,
		CPUCfsPeriod:       true,
		CPUCfsQuota:        true,
		CPUShares:          true,
		CPUSet:             true,
		PidsLimit:          true,
		IPv4Forwarding:     readTrim("/proc/sys/net/ipv4/ip_forward") == "1",
		Debug:              d.cfg.Debug,
		NFd:                countFDs(),
		NGoroutines:        runtime.NumGoroutine(),
		SystemTime:         time.Now().Format(time.RFC3339Nano),
		LoggingDriver:      "json-file",
		CgroupDriver:       "cgroupfs",
		CgroupVersion:      cgv,
		KernelVersion:      unix.ByteSliceToString(uts.Release[:]),
		OperatingSystem:    osName(),
		OSVersion:          osVersion(),
		OSType:             "linux",
		Architecture:       unix.ByteSliceToString(uts.Machine[:]),
		NCPU:               runtime.NumCPU(),
		MemTotal:           int64(si.Totalram) * int64(si.Unit),
		DockerRootDir:      d.cfg.Root,
		Name:               hostname,
		ServerVersion:      version.Version,
		DefaultRuntime:     "berth",
		Runtimes:           map[string]system.RuntimeWithStatus{"berth": {Runtime: system.Runtime{Path: "berth"}}},
		LiveRestoreEnabled: true,
		SecurityOptions:    []string{"name=seccomp,profile=builtin", "name=cgroupns"},
		InitBinary:         "berth",
		RegistryConfig:     d.images.RegistryConfig(),
	}, nil
}

// cgroupVersion tells a unified (v2) host from a v1 or hybrid one by the root's controllers file.
func cgroupVersion() string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "2"
	}
	return "1"
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func countFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}

func osRelease() map[string]string {
	m := map[string]string{}
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return m
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, "=")
		if ok {
			m[k] = strings.Trim(v, `"`)
		}
	}
	return m
}

func osName() string {
	if n := osRelease()["PRETTY_NAME"]; n != "" {
		return n
	}
	return "Linux"
}

func osVersion() string { return osRelease()["VERSION_ID"] }

// backingFS names the filesystem under the data root, as `docker info` shows it.
func backingFS(root string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return "unknown"
	}
	switch st.Type {
	case unix.EXT4_SUPER_MAGIC:
		return "extfs"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	default:
		return fmt.Sprintf("0x%x", st.Type)
	}
}

// hostID is a stable identifier of this daemon's data root, created once.
func hostID(root string) string {
	p := root + "/engine-id"
	if b, err := os.ReadFile(p); err == nil {
		return strings.TrimSpace(string(b))
	}
	var buf [16]byte
	f, err := os.Open("/dev/urandom")
	if err == nil {
		_, _ = f.Read(buf[:])
		_ = f.Close()
	}
	id := fmt.Sprintf("%x-%x-%x-%x-%x", buf[0:4], buf[4:6], buf[6:8], buf[8:10], buf[10:16])
	_ = fsutil.WriteFileAtomic(p, []byte(id+"\n"), 0o600)
	return id
}
