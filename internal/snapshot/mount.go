package snapshot

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// MountAll mounts mounts on target, in order (later mounts stack on earlier ones). On error nothing
// it mounted stays mounted.
//
// Overlay mounts whose option string does not fit in one page — the limit of mount(2)'s data
// argument, reached at roughly a hundred layers — are made with the new mount API (fsopen,
// fsconfig "lowerdir+" once per layer, fsmount, move_mount), which has no such limit (the kernel
// still caps the stack at 500 layers). Others use plain mount(2).
func MountAll(mounts []Mount, target string) error {
	for i, m := range mounts {
		if err := mountOne(m, target); err != nil {
			for range i {
				_ = unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
			}
			return fmt.Errorf("mounting %s %s on %s: %w", m.Type, m.Source, target, err)
		}
	}
	return nil
}

// UnmountAll unmounts everything stacked on target. A busy mount is detached lazily (it goes away
// when its last user does). It is idempotent: a target that is not a mount point, or does not
// exist, is fine. It never follows a symlink at target.
func UnmountAll(target string) error { return unmountAll(target, false) }

// DetachAll lazily unmounts every mount stacked on target (MNT_DETACH, as Docker unmounts a
// container's overlay): the mount is gone from the tree at once, and the kernel frees it when
// nothing uses it, without the RCU grace period a plain unmount waits for (~1 ms). For a
// container whose processes are all gone.
func DetachAll(target string) error { return unmountAll(target, true) }

func unmountAll(target string, detach bool) error {
	flags := unix.UMOUNT_NOFOLLOW
	if detach {
		flags |= unix.MNT_DETACH
	}
	for range 1024 {
		err := unix.Unmount(target, flags)
		if errors.Is(err, unix.EBUSY) && !detach {
			err = unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		}
		switch {
		case err == nil, errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil // not (or no longer) a mount point
		default:
			return fmt.Errorf("unmounting %s: %w", target, err)
		}
	}
	return fmt.Errorf("unmounting %s: still mounted after 1024 unmounts", target)
}

type mountFlag struct {
	clear bool
	flag  uintptr
	attr  uint64 // MOUNT_ATTR_* for the new mount API
}

// mountFlags maps mount(8) option words to flags; any other option is filesystem data.
var mountFlags = map[string]mountFlag{
	"ro":         {flag: unix.MS_RDONLY, attr: unix.MOUNT_ATTR_RDONLY},
	"rw":         {clear: true, flag: unix.MS_RDONLY, attr: unix.MOUNT_ATTR_RDONLY},
	"bind":       {flag: unix.MS_BIND},
	"rbind":      {flag: unix.MS_BIND | unix.MS_REC},
	"nosuid":     {flag: unix.MS_NOSUID, attr: unix.MOUNT_ATTR_NOSUID},
	"suid":       {clear: true, flag: unix.MS_NOSUID, attr: unix.MOUNT_ATTR_NOSUID},
	"nodev":      {flag: unix.MS_NODEV, attr: unix.MOUNT_ATTR_NODEV},
	"dev":        {clear: true, flag: unix.MS_NODEV, attr: unix.MOUNT_ATTR_NODEV},
	"noexec":     {flag: unix.MS_NOEXEC, attr: unix.MOUNT_ATTR_NOEXEC},
	"exec":       {clear: true, flag: unix.MS_NOEXEC, attr: unix.MOUNT_ATTR_NOEXEC},
	"noatime":    {flag: unix.MS_NOATIME, attr: unix.MOUNT_ATTR_NOATIME},
	"relatime":   {flag: unix.MS_RELATIME, attr: unix.MOUNT_ATTR_RELATIME},
	"nodiratime": {flag: unix.MS_NODIRATIME, attr: unix.MOUNT_ATTR_NODIRATIME},
	"sync":       {flag: unix.MS_SYNCHRONOUS},
}

type parsedOptions struct {
	flags uintptr
	attrs uint64
	data  []string
}

func parseOptions(opts []string) parsedOptions {
	var p parsedOptions
	for _, o := range opts {
		f, ok := mountFlags[o]
		if !ok {
			p.data = append(p.data, o)
			continue
		}
		if f.clear {
			p.flags &^= f.flag
			p.attrs &^= f.attr
		} else {
			p.flags |= f.flag
			p.attrs |= f.attr
		}
	}
	return p
}

func mountOne(m Mount, target string) error {
	p := parseOptions(m.Options)
	switch m.Type {
	case "bind", "rbind":
		if m.Type == "rbind" {
			p.flags |= unix.MS_REC
		}
		bindFlags := unix.MS_BIND | (p.flags & unix.MS_REC)
		if err := unix.Mount(m.Source, target, "", bindFlags, ""); err != nil {
			return err
		}
		// A bind mount ignores most flags; apply them (ro, nosuid, ...) with a remount.
		if rest := p.flags &^ (unix.MS_BIND | unix.MS_REC); rest != 0 {
			if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|rest, ""); err != nil {
				_ = unix.Unmount(target, unix.MNT_DETACH)
				return fmt.Errorf("remounting bind: %w", err)
			}
		}
		return nil
	case "overlay":
		data := strings.Join(p.data, ",")
		if len(data) < os.Getpagesize() {
			return unix.Mount(m.Source, target, "overlay", p.flags, data)
		}
		return mountOverlayFD(m.Source, p, target)
	default:
		return fmt.Errorf("unsupported mount type %q", m.Type)
	}
}

// mountOverlayFD mounts an overlay with the new mount API, one fsconfig call per option and per
// lower dir, so the option length is unlimited.
func mountOverlayFD(source string, p parsedOptions, target string) (retErr error) {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	// The kernel explains fsconfig failures in a message log readable from fsfd.
	fail := func(what string, err error) error {
		if msg := fsLog(fsfd); msg != "" {
			return fmt.Errorf("%s: %w (%s)", what, err, msg)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	if source == "" {
		source = "overlay"
	}
	if err := unix.FsconfigSetString(fsfd, "source", source); err != nil {
		return fail("fsconfig source", err)
	}
	if p.flags&unix.MS_RDONLY != 0 {
		if err := unix.FsconfigSetFlag(fsfd, "ro"); err != nil {
			return fail("fsconfig ro", err)
		}
	}
	for _, o := range p.data {
		k, v, hasValue := strings.Cut(o, "=")
		switch {
		case k == "lowerdir":
			for _, dir := range splitLowerdir(v) {
				if err := unix.FsconfigSetString(fsfd, "lowerdir+", dir); err != nil {
					return fail("fsconfig lowerdir+ "+dir, err)
				}
			}
		case hasValue:
			if err := unix.FsconfigSetString(fsfd, k, v); err != nil {
				return fail("fsconfig "+k, err)
			}
		default:
			if err := unix.FsconfigSetFlag(fsfd, k); err != nil {
				return fail("fsconfig "+k, err)
			}
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fail("creating overlay superblock", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, int(p.attrs))
	if err != nil {
		return fail("fsmount", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount to %s: %w", target, err)
	}
	return nil
}

// SplitLowerdir splits an overlay lowerdir value on ':' and removes the backslash escapes that
// mount(2)'s syntax needs for ':' and '\' inside paths ("lowerdir+" takes raw paths).
func SplitLowerdir(v string) []string { return splitLowerdir(v) }

// EscapeLowerdir escapes one path for a lowerdir value (SplitLowerdir's inverse).
func EscapeLowerdir(p string) string {
	return strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(p)
}

func splitLowerdir(v string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && i+1 < len(v):
			i++
			cur.WriteByte(v[i])
		case c == ':':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(out, cur.String())
}

// fsLog drains the fs context's message log.
func fsLog(fsfd int) string {
	var msgs []string
	buf := make([]byte, 4096)
	for range 32 {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	return strings.Join(msgs, "; ")
}
