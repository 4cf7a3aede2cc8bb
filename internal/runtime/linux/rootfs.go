package linux

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Rootfs setup runs in the container's fresh mount namespace, before pivot_root. The rootfs
// content is attacker-controlled (image layers can hold symlinks like /proc -> /), so every
// mount destination is resolved with securejoin, which follows symlinks without leaving the
// rootfs. Nothing inside the container runs yet, so the tree cannot change underneath us unless
// the caller shares the rootfs with a running container, which berth never does.

type defaultDevice struct {
	name         string
	major, minor uint32
}

// Docker's default devices.
var defaultDevices = []defaultDevice{
	{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
}

func (ip *initProc) setupRootfs() error {
	cfg := &ip.cfg
	sp := cfg.Spec
	rootfs := cfg.Rootfs
	// Keep our mounts from propagating back to the host.
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make / rslave: %w", err)
	}
	// pivot_root needs the new root to be a mount point.
	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs: %w", err)
	}
	devBound := false
	for _, m := range sp.Mounts {
		if filepath.Clean(m.Destination) == "/dev" && (m.Type == "bind" || parseMountOptions(m.Options).bind) {
			devBound = true
		}
		if err := ip.mountEntry(rootfs, m); err != nil {
			return fmt.Errorf("mount %s: %w", m.Destination, err)
		}
	}
	if !devBound {
		if err := createDevices(rootfs, sp.Linux.Devices); err != nil {
			return err
		}
	}
	if err := ip.enc.Encode(syncMsg{Type: msgHooks}); err != nil {
		return fmt.Errorf("sync hooks: %w", err)
	}
	var m syncMsg
	if err := ip.dec.Decode(&m); err != nil || m.Type != msgContinue {
		return fmt.Errorf("waiting for hooks: %v %s", err, m.Error)
	}
	if sp.Hooks != nil && len(sp.Hooks.CreateContainer) > 0 {
		st := specs.State{Version: specs.Version, ID: cfg.ID, Status: specs.StateCreating, Pid: os.Getpid(), Bundle: cfg.Bundle, Annotations: sp.Annotations}
		if err := runHooksInContainer(sp.Hooks.CreateContainer, st); err != nil {
			return fmt.Errorf("createContainer hook: %w", err)
		}
	}
	if err := pivotRoot(rootfs); err != nil {
		return err
	}
	for k, v := range sp.Linux.Sysctl {
		p := filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/"))
		if strings.Contains(k, "..") || strings.Contains(k, "/") {
			return fmt.Errorf("invalid sysctl %q", k)
		}
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			return fmt.Errorf("sysctl %s: %w", k, err)
		}
	}
	if sp.Process.Terminal {
		if err := setupConsole(fdConsole, sp.Process.ConsoleSize, true); err != nil {
			return err
		}
	}
	for _, p := range sp.Linux.MaskedPaths {
		if err := maskPath(p); err != nil {
			return err
		}
	}
	for _, p := range sp.Linux.ReadonlyPaths {
		if err := readonlyPath(p); err != nil {
			return err
		}
	}
	if sp.Root.Readonly {
		if err := remountReadonly("/", false); err != nil {
			return fmt.Errorf("make rootfs read-only: %w", err)
		}
	}
	if sp.Linux.RootfsPropagation != "" {
		prop, err := rootfsPropagation(sp.Linux.RootfsPropagation)
		if err != nil {
			return err
		}
		if err := unix.Mount("", "/", "", prop, ""); err != nil {
			return fmt.Errorf("rootfs propagation: %w", err)
		}
	}
	return nil
}

// mountEntry performs one spec mount below rootfs.
func (ip *initProc) mountEntry(rootfs string, m specs.Mount) error {
	dest, err := securejoin.SecureJoin(rootfs, m.Destination)
	if err != nil {
		return err
	}
	if dest == filepath.Clean(rootfs) {
		return errors.New("the mountpoint resolves to the container's root")
	}
	o := parseMountOptions(m.Options)
	typ := m.Type
	if o.bind || typ == "bind" {
		src := m.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(ip.cfg.Bundle, src)
		}
		fi, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("bind source: %w", err)
		}
		if err := createMountpoint(dest, fi.IsDir()); err != nil {
			return err
		}
		flags := uintptr(unix.MS_BIND)
		if o.recursive {
			flags |= unix.MS_REC
		}
		if err := unix.Mount(src, dest, "", flags, ""); err != nil {
			return err
		}
		if o.flags&^unix.MS_REMOUNT != 0 {
			if err := remountBind(dest, o.flags&^unix.MS_REMOUNT); err != nil {
				return err
			}
		}
		return setPropagation(dest, o.propagation)
	}
	if typ == "cgroup" || typ == "cgroup2" {
		return ip.mountCgroup(dest, o)
	}
	if err := createMountpoint(dest, true); err != nil {
		return err
	}
	data := strings.Join(o.data, ",")
	err = unix.Mount(m.Source, dest, typ, o.flags, data)
	if err != nil && (typ == "sysfs" || typ == "mqueue") && errors.Is(err, unix.EPERM) {
		// Without its own network (sysfs) or IPC (mqueue) namespace the kernel refuses a new
		// instance; bind the host's instead, as runc does.
		hostPath := map[string]string{"sysfs": "/sys", "mqueue": "/dev/mqueue"}[typ]
		if err = unix.Mount(hostPath, dest, "", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			err = remountBind(dest, o.flags)
		}
	}
	if err != nil {
		return err
	}
	return setPropagation(dest, o.propagation)
}

func setPropagation(dest string, props []uintptr) error {
	for _, p := range props {
		if err := unix.Mount("", dest, "", p, ""); err != nil {
			return fmt.Errorf("set propagation: %w", err)
		}
	}
	return nil
}

// remountBind applies flags (ro, nosuid, ...) to a bind mount, keeping the flags the kernel
// locks (a bind remount that drops nosuid/nodev/noexec from a locked mount fails).
func remountBind(dest string, flags uintptr) error {
	err := unix.Mount("", dest, "", unix.MS_BIND|unix.MS_REMOUNT|flags, "")
	if err != nil && errors.Is(err, unix.EPERM) {
		err = unix.Mount("", dest, "", unix.MS_BIND|unix.MS_REMOUNT|flags|lockedFlags(dest), "")
	}
	if err != nil {
		return fmt.Errorf("remount %s: %w", dest, err)
	}
	return nil
}

func lockedFlags(p string) uintptr {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return 0
	}
	var f uintptr
	for _, x := range []struct{ st, ms uintptr }{
		{unix.ST_RDONLY, unix.MS_RDONLY}, {unix.ST_NOSUID, unix.MS_NOSUID}, {unix.ST_NODEV, unix.MS_NODEV},
		{unix.ST_NOEXEC, unix.MS_NOEXEC}, {unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME},
		{unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&x.st != 0 {
			f |= x.ms
		}
	}
	return f
}

func createMountpoint(dest string, dir bool) error {
	if dir {
		if err := os.MkdirAll(dest, 0o755); err != nil {
			return fmt.Errorf("create mountpoint: %w", err)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return fmt.Errorf("create mountpoint: %w", err)
	}
	f, err := os.OpenFile(dest, os.O_CREATE|os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("create mountpoint: %w", err)
	}
	return f.Close()
}

// mountCgroup exposes the container's own cgroup at dest: a cgroup2 instance (v2, scoped by the
// cgroup namespace) or, on v1, a tmpfs with one bind mount per controller directory.
func (ip *initProc) mountCgroup(dest string, o mountOpts) error {
	cg := ip.cfg.Cgroup
	if err := createMountpoint(dest, true); err != nil {
		return err
	}
	ro := o.flags&unix.MS_RDONLY != 0
	if cg.V2 != "" {
		if ip.cfg.UnshareCgroupNS {
			return unix.Mount("cgroup2", dest, "cgroup2", o.flags, "")
		}
		if err := unix.Mount(cg.v2Dir(), dest, "", unix.MS_BIND, ""); err != nil {
			return err
		}
		return remountBind(dest, o.flags)
	}
	if err := unix.Mount("tmpfs", dest, "tmpfs", o.flags&^unix.MS_RDONLY, "mode=755"); err != nil {
		return err
	}
	for ctl := range cg.V1 {
		src := cg.v1Dir(ctl)
		if _, err := os.Stat(src); err != nil {
			continue
		}
		d := filepath.Join(dest, ctl)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(src, d, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind cgroup %s: %w", ctl, err)
		}
		if ro {
			if err := remountBind(d, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC); err != nil {
				return err
			}
		}
	}
	if ro {
		return unix.Mount("", dest, "", unix.MS_REMOUNT|o.flags, "mode=755")
	}
	return nil
}

// createDevices populates the container's /dev with Docker's default devices, the spec's
// devices and the usual symlinks.
func createDevices(rootfs string, devs []specs.LinuxDevice) error {
	old := unix.Umask(0)
	defer unix.Umask(old)
	for _, d := range containerDevices(devs) {
		if err := createDevice(rootfs, d); err != nil {
			return fmt.Errorf("create device %s: %w", d.Path, err)
		}
	}
	dev, err := securejoin.SecureJoin(rootfs, "/dev")
	if err != nil {
		return err
	}
	for _, l := range devLinks() {
		p := filepath.Join(dev, l[1])
		if l[1] == "ptmx" {
			_ = os.Remove(p)
		}
		if err := os.Symlink(l[0], p); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("symlink /dev/%s: %w", l[1], err)
		}
	}
	return nil
}

func createDevice(rootfs string, d specs.LinuxDevice) error {
	n, err := nodeOf(d)
	if err != nil {
		return err
	}
	dest, err := securejoin.SecureJoin(rootfs, d.Path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	_ = os.Remove(dest)
	err = unix.Mknod(dest, n.mode, int(n.dev))
	if err != nil && errors.Is(err, unix.EPERM) && isUserNS() {
		// In a user namespace mknod is not allowed: bind the host's device instead.
		if err := createMountpoint(dest, false); err != nil {
			return err
		}
		return unix.Mount(d.Path, dest, "", unix.MS_BIND, "")
	}
	if err != nil {
		return err
	}
	return unix.Lchown(dest, n.uid, n.gid)
}

// pivotRoot makes rootfs the root and detaches the old root (runc's pivot_root(".", ".")
// trick, which needs no directory for the old root inside the image).
func pivotRoot(rootfs string) error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /: %w", err)
	}
	defer unix.Close(oldroot)
	newroot, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open rootfs: %w", err)
	}
	defer unix.Close(newroot)
	if err := unix.Fchdir(newroot); err != nil {
		return fmt.Errorf("chdir rootfs: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return fmt.Errorf("chdir old root: %w", err)
	}
	// Make the old root a slave so the detach below does not propagate to the host.
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make old root rslave: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return nil
}

// maskPath hides p: /dev/null over files, an empty read-only tmpfs over directories.
func maskPath(p string) error {
	err := unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
	if err != nil && errors.Is(err, unix.ENOTDIR) {
		err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "")
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	return nil
}

func readonlyPath(p string) error {
	if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("readonly %s: %w", p, err)
	}
	return remountReadonly(p, true)
}

func remountReadonly(p string, bind bool) error {
	flags := uintptr(unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_BIND)
	_ = bind
	if err := unix.Mount("", p, "", flags|lockedFlags(p), ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", p, err)
	}
	return nil
}

// setupConsole allocates a pty in the container's devpts instance, sends the master to the
// console socket (SCM_RIGHTS, as runc does) and makes the slave the process's stdio and
// controlling terminal. With bindConsole it is also bind-mounted at /dev/console.
func setupConsole(sockFD int, size *specs.Box, bindConsole bool) error {
	master, err := unix.Open("/dev/pts/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open ptmx: %w", err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetUint32(master, unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("ptsname: %w", err)
	}
	slavePath := "/dev/pts/" + strconv.Itoa(int(n))
	if size != nil {
		ws := &unix.Winsize{Row: uint16(size.Height), Col: uint16(size.Width)}
		if err := unix.IoctlSetWinsize(master, unix.TIOCSWINSZ, ws); err != nil {
			return fmt.Errorf("set console size: %w", err)
		}
	}
	if err := unix.Sendmsg(sockFD, []byte(slavePath), unix.UnixRights(master), nil, 0); err != nil {
		return fmt.Errorf("send console master: %w", err)
	}
	_ = unix.Close(sockFD)
	slave, err := unix.Open(slavePath, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open console slave: %w", err)
	}
	defer unix.Close(slave)
	if bindConsole {
		if err := createMountpoint("/dev/console", false); err == nil {
			if err := unix.Mount(slavePath, "/dev/console", "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind /dev/console: %w", err)
			}
		}
	}
	for fd := 0; fd <= 2; fd++ {
		if err := unix.Dup3(slave, fd, 0); err != nil {
			return fmt.Errorf("dup console: %w", err)
		}
	}
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("set controlling terminal: %w", err)
	}
	return nil
}

// isUserNS reports whether the process runs in a user namespace other than the initial one.
func isUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}
