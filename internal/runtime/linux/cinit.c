// berth's container init in C.
//
// The runtime starts "berth init" in the container's new namespaces. When the container needs
// nothing the C init lacks (no user namespace, no hooks, no namespace joined other than the
// network's: Docker's usual container), the runtime sets _BERTH_CINIT and sends a program
// instead of the JSON config of the Go init (init.go): a flat list of operations that
// cinit_prog.go derives from the spec. Every decision is taken there, in Go, next to the Go
// init's; this file only carries the operations out, in order. It runs from a constructor,
// before the Go runtime would start, so a container's start pays neither the Go runtime's
// start-up nor a multi-threaded process's execve.
//
// The program arrives on the sync socket (fd 3) as a header {magic, length} and `length` bytes
// of records: u32 code, u32 n, n × u64, u32 m, m × {u32 len, len bytes}, in native byte order.
// The reply is the Go init's: one JSON line, {"type":"ready"} or {"type":"error","error":...}.
//
// Paths inside the container resolve with openat2(RESOLVE_IN_ROOT) below the rootfs: image
// content is untrusted (a layer may hold /proc -> /), and the kernel then follows symlinks
// without leaving the root. Mounts target the resolved directory through /proc/self/fd.
#define _GNU_SOURCE
#include "cinit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <dirent.h>
#include <grp.h>
#include <termios.h>
#include <unistd.h>

#define FD_SYNC 3
#define FD_FIFO 4
#define FD_CONSOLE 5

#define MAX_PROGRAM (16u << 20)
#define MAX_INTS 64
#define MAX_STRS 8

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

struct op {
	uint32_t code;
	uint32_t ni, ns;
	uint64_t i[MAX_INTS];
	char *s[MAX_STRS];
	uint32_t slen[MAX_STRS];
};

struct cinit {
	int ready_sent;
	int rootfd;
	char **argv, **envp;
	size_t argc, envc;
	char path[PATH_MAX];
	int fifo;
};

static struct cinit S = {.rootfd = -1, .fifo = -1};

static void write_all(int fd, const char *b, size_t n) {
	while (n > 0) {
		ssize_t w = write(fd, b, n);
		if (w < 0) {
			if (errno == EINTR) {
				continue;
			}
			return;
		}
		b += w;
		n -= (size_t)w;
	}
}

// errstr is strerror in Go's spelling (lower-case first letter), so that messages match the Go
// init's: the daemon tells "no such file or directory" and "permission denied" apart by them.
static const char *errstr(int e) {
	static char buf[128];
	snprintf(buf, sizeof buf, "%s", strerror(e));
	if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z')) {
		buf[0] = (char)(buf[0] - 'A' + 'a');
	}
	return buf;
}

// fail reports the error the way the Go init does and ends the process: on the sync socket
// before ready, on stderr after (the creator is gone by then).
__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char *fmt, ...) {
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (S.ready_sent) {
		dprintf(2, "berth init: %s\n", msg);
		_exit(1);
	}
	char out[sizeof msg * 6 + 64];
	size_t n = 0;
	n += (size_t)snprintf(out, sizeof out, "{\"type\":\"error\",\"error\":\"");
	for (const unsigned char *p = (const unsigned char *)msg; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\') {
			out[n++] = '\\';
			out[n++] = (char)*p;
		} else if (*p < 0x20) {
			n += (size_t)snprintf(out + n, sizeof out - n, "\\u%04x", *p);
		} else {
			out[n++] = (char)*p;
		}
	}
	n += (size_t)snprintf(out + n, sizeof out - n, "\"}\n");
	write_all(FD_SYNC, out, n);
	_exit(1);
}

static int read_full(int fd, void *buf, size_t n) {
	char *p = buf;
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r <= 0) {
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

// parse splits the program into ops; every count and length is checked against the buffer.
static struct op *parse(const unsigned char *b, size_t n, size_t *count) {
	size_t cap = 64, k = 0, off = 0;
	struct op *ops = calloc(cap, sizeof *ops);
	if (ops == NULL) {
		fail("read config: out of memory");
	}
#define NEED(x)                                                        \
	do {                                                           \
		if ((x) > n - off) {                                   \
			fail("read config: truncated program at %zu", off); \
		}                                                      \
	} while (0)
	while (off < n) {
		if (k == cap) {
			cap *= 2;
			struct op *grown = realloc(ops, cap * sizeof *ops);
			if (grown == NULL) {
				fail("read config: out of memory");
			}
			ops = grown;
		}
		struct op *o = &ops[k];
		memset(o, 0, sizeof *o);
		NEED(8);
		memcpy(&o->code, b + off, 4);
		memcpy(&o->ni, b + off + 4, 4);
		off += 8;
		if (o->code == 0 || o->code >= CI_MAX || o->ni > MAX_INTS) {
			fail("read config: bad op %u with %u ints", o->code, o->ni);
		}
		NEED((size_t)o->ni * 8);
		memcpy(o->i, b + off, (size_t)o->ni * 8);
		off += (size_t)o->ni * 8;
		NEED(4);
		memcpy(&o->ns, b + off, 4);
		off += 4;
		if (o->ns > MAX_STRS) {
			fail("read config: op %u with %u strings", o->code, o->ns);
		}
		for (uint32_t j = 0; j < o->ns; j++) {
			uint32_t len;
			NEED(4);
			memcpy(&len, b + off, 4);
			off += 4;
			NEED(len);
			o->s[j] = malloc((size_t)len + 1);
			if (o->s[j] == NULL) {
				fail("read config: out of memory");
			}
			memcpy(o->s[j], b + off, len);
			o->s[j][len] = '\0';
			o->slen[j] = len;
			off += len;
		}
		k++;
	}
#undef NEED
	*count = k;
	return ops;
}

static const char *str(const struct op *o, uint32_t j) { return j < o->ns ? o->s[j] : ""; }
static uint64_t num(const struct op *o, uint32_t j) { return j < o->ni ? o->i[j] : 0; }

// open_in_root resolves p (a path as the container sees it) below the rootfs.
static int open_in_root(const char *p, uint64_t flags) {
	struct open_how how = {.flags = flags | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
	// A mount or rename anywhere on the host while ".." is resolved makes the kernel answer
	// EAGAIN (or EXDEV); retry as pathrs/securejoin do.
	for (int tries = 0;; tries++) {
		int fd = (int)syscall(SYS_openat2, S.rootfd, p, &how, sizeof how);
		if (fd >= 0 || (errno != EAGAIN && errno != EXDEV) || tries >= 128) {
			return fd;
		}
	}
}

static void split(const char *p, char *parent, size_t cap, const char **name) {
	const char *slash = strrchr(p, '/');
	size_t plen = slash == NULL ? 0 : (size_t)(slash - p);
	if (plen >= cap) {
		plen = cap - 1;
	}
	memcpy(parent, p, plen);
	parent[plen] = '\0';
	if (plen == 0) {
		strcpy(parent, "/");
	}
	*name = slash == NULL ? p : slash + 1;
}

#define MAX_LINKS 40

// link_target returns in out the path (as the container sees it) that the symlink name in
// directory parent points to, or -1 if name is no symlink.
static int link_target(int pd, const char *parent, const char *name, char *out, size_t cap) {
	char link[PATH_MAX];
	ssize_t n = readlinkat(pd, name, link, sizeof link - 1);
	if (n < 0) {
		return -1;
	}
	link[n] = '\0';
	int w = link[0] == '/' ? snprintf(out, cap, "%s", link) : snprintf(out, cap, "%s/%s", parent, link);
	if (w < 0 || (size_t)w >= cap) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static int mkdir_in_root_depth(const char *p, int depth);

// mkdir_in_root creates p and its missing parents below the rootfs and returns an O_PATH
// descriptor of it. Like securejoin followed by os.MkdirAll (the Go init), it follows symlinks
// inside the root and creates the missing target of a dangling one: images link /var/run to
// /run, or /etc/resolv.conf to a file under /run that does not exist yet.
static int mkdir_in_root(const char *p) { return mkdir_in_root_depth(p, 0); }

static int mkdir_in_root_depth(const char *p, int depth) {
	if (depth > MAX_LINKS) {
		errno = ELOOP;
		return -1;
	}
	int fd = open_in_root(p, O_PATH | O_DIRECTORY);
	if (fd >= 0 || errno != ENOENT) {
		return fd;
	}
	char buf[PATH_MAX];
	size_t len = strlen(p);
	if (len >= sizeof buf) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, p, len + 1);
	for (size_t end = 1; end <= len; end++) {
		if (end < len && buf[end] != '/') {
			continue;
		}
		char save = buf[end];
		buf[end] = '\0';
		int d = open_in_root(buf, O_PATH | O_DIRECTORY);
		if (d < 0 && errno == ENOENT) {
			char parent[PATH_MAX];
			const char *name;
			split(buf, parent, sizeof parent, &name);
			int pd = open_in_root(parent, O_PATH | O_DIRECTORY);
			if (pd < 0) {
				buf[end] = save;
				return -1;
			}
			if (mkdirat(pd, name, 0755) < 0) {
				int e = errno;
				char target[PATH_MAX];
				if (e == EEXIST && link_target(pd, parent, name, target, sizeof target) == 0) {
					// A dangling symlink: make what it points to.
					close(pd);
					int t = mkdir_in_root_depth(target, depth + 1);
					if (t < 0) {
						buf[end] = save;
						return -1;
					}
					close(t);
				} else if (e != EEXIST) {
					close(pd);
					buf[end] = save;
					errno = e;
					return -1;
				} else {
					close(pd);
				}
			} else {
				close(pd);
			}
			d = open_in_root(buf, O_PATH | O_DIRECTORY);
		}
		buf[end] = save;
		if (d < 0) {
			return -1;
		}
		if (end == len) {
			return d;
		}
		close(d);
	}
	return open_in_root(p, O_PATH | O_DIRECTORY);
}

// create_file_in_root makes sure p exists (a bind mount target for a file), following a
// dangling symlink to create its target as the Go init does.
static int create_file_in_root_depth(const char *p, int depth) {
	if (depth > MAX_LINKS) {
		errno = ELOOP;
		return -1;
	}
	int fd = open_in_root(p, O_PATH);
	if (fd >= 0 || errno != ENOENT) {
		return fd;
	}
	char parent[PATH_MAX];
	const char *name;
	split(p, parent, sizeof parent, &name);
	int pd = mkdir_in_root(parent);
	if (pd < 0) {
		return -1;
	}
	// O_PATH descriptors cannot create; reopen the directory for real.
	int dfd = openat(pd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	close(pd);
	if (dfd < 0) {
		return -1;
	}
	int f = openat(dfd, name, O_CREAT | O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
	int e = errno;
	if (f < 0 && e == ELOOP) {
		char target[PATH_MAX];
		if (link_target(dfd, parent, name, target, sizeof target) < 0) {
			e = errno;
			close(dfd);
			errno = e;
			return -1;
		}
		close(dfd);
		int t = create_file_in_root_depth(target, depth + 1);
		if (t < 0) {
			return -1;
		}
		close(t);
		return open_in_root(p, O_PATH);
	}
	close(dfd);
	if (f < 0 && e != EEXIST) {
		errno = e;
		return -1;
	}
	if (f >= 0) {
		close(f);
	}
	return open_in_root(p, O_PATH);
}

static int create_file_in_root(const char *p) { return create_file_in_root_depth(p, 0); }

// is_root reports whether fd names the rootfs directory itself: a mount there would be stacked
// over the root, unseen by later lookups below S.rootfd but pivoted into.
static int is_root(int fd) {
	struct stat a, b;
	return fstat(fd, &a) == 0 && fstat(S.rootfd, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static void fdpath(char *buf, size_t cap, int fd) { snprintf(buf, cap, "/proc/self/fd/%d", fd); }

// reopen_top returns an O_PATH descriptor of the mount just stacked on the directory fd names. It
// walks fd's resolved path again without following any symlink: the new mount's content is not
// trusted, and a re-lookup of the spec's path could go through it and land elsewhere.
static int reopen_top(int fd) {
	char self[64], root[PATH_MAX], at[PATH_MAX];
	fdpath(self, sizeof self, S.rootfd);
	ssize_t rn = readlink(self, root, sizeof root - 1);
	fdpath(self, sizeof self, fd);
	ssize_t n = readlink(self, at, sizeof at - 1);
	if (rn <= 0 || n <= 0) {
		return -1;
	}
	root[rn] = at[n] = '\0';
	size_t rl = (size_t)rn;
	if (strcmp(root, "/") == 0) {
		rl = 0;
	}
	if (strncmp(at, root, rl) != 0 || (at[rl] != '/' && at[rl] != '\0')) {
		errno = EXDEV;
		return -1;
	}
	struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
	for (int tries = 0;; tries++) {
		int r = (int)syscall(SYS_openat2, S.rootfd, at[rl] ? at + rl : "/", &how, sizeof how);
		if (r >= 0 || (errno != EAGAIN && errno != EXDEV) || tries >= 128) {
			return r;
		}
	}
}

// locked_flags are the flags of the mount at target that a bind remount must keep (the kernel
// refuses to drop them from a mount it locked).
static unsigned long locked_flags(const char *target) {
	struct statfs st;
	if (statfs(target, &st) < 0) {
		return 0;
	}
	unsigned long f = 0;
	static const struct {
		unsigned long st, ms;
	} m[] = {{ST_RDONLY, MS_RDONLY}, {ST_NOSUID, MS_NOSUID}, {ST_NODEV, MS_NODEV}, {ST_NOEXEC, MS_NOEXEC},
		 {ST_NOATIME, MS_NOATIME}, {ST_NODIRATIME, MS_NODIRATIME}, {ST_RELATIME, MS_RELATIME}};
	for (size_t k = 0; k < sizeof m / sizeof m[0]; k++) {
		if (st.f_flags & m[k].st) {
			f |= m[k].ms;
		}
	}
	return f;
}

static int remount_bind(const char *target, unsigned long flags) {
	int r = mount("", target, "", MS_BIND | MS_REMOUNT | flags, "");
	if (r < 0 && errno == EPERM) {
		r = mount("", target, "", MS_BIND | MS_REMOUNT | flags | locked_flags(target), "");
	}
	return r;
}

// to_new_mount moves *fd, which named the directory a mount went onto, to the new mount's
// root, found again along the resolved path following no symlink, and sets target (of size n)
// to its /proc/self/fd path.
static void to_new_mount(int *fd, char *target, size_t n, const char *dest) {
	int top = reopen_top(*fd);
	if (top < 0) {
		fail("mount %s: %s", dest, errstr(errno));
	}
	close(*fd);
	*fd = top;
	fdpath(target, n, *fd);
}

// op_mount: i0 mount flags, i1 CI_MK_*, i2 bind remount flags (0: none), i3 fallback on EPERM
// (bind s4 instead, then remount with i0), i4.. propagation flags; s0 source, s1 destination in
// the root, s2 type, s3 data, s4 fallback source.
static void op_mount(const struct op *o) {
	const char *src = str(o, 0), *dest = str(o, 1), *type = str(o, 2), *data = str(o, 3);
	unsigned long flags = (unsigned long)num(o, 0);
	int fd;
	switch (num(o, 1)) {
	case CI_MK_DIR:
		fd = mkdir_in_root(dest);
		break;
	case CI_MK_FILE:
		fd = create_file_in_root(dest);
		break;
	default:
		fd = open_in_root(dest, O_PATH);
	}
	if (fd < 0) {
		fail("mount %s: create mountpoint: %s", dest, errstr(errno));
	}
	if (is_root(fd)) {
		fail("mount %s: the mountpoint resolves to the container's root", dest);
	}
	char target[64];
	fdpath(target, sizeof target, fd);
	int r = mount(src, target, *type ? type : NULL, flags, *data ? data : NULL);
	if (r < 0 && errno == EPERM && num(o, 3)) {
		// Without its own network (sysfs) or IPC (mqueue) namespace the kernel refuses a new
		// instance; the host's is bound instead, as runc does.
		r = mount(str(o, 4), target, "", MS_BIND | MS_REC, "");
		if (r == 0) {
			to_new_mount(&fd, target, sizeof target, dest);
			r = remount_bind(target, flags);
		}
	}
	if (r < 0) {
		fail("mount %s: %s", dest, errstr(errno));
	}
	unsigned long remount = (unsigned long)num(o, 2);
	if (remount == 0 && o->ni <= 4) {
		close(fd);
		return;
	}
	to_new_mount(&fd, target, sizeof target, dest);
	if (remount != 0 && remount_bind(target, remount) < 0) {
		fail("mount %s: remount %s: %s", dest, dest, errstr(errno));
	}
	for (uint32_t j = 4; j < o->ni; j++) {
		if (mount("", target, "", (unsigned long)o->i[j], "") < 0) {
			fail("mount %s: set propagation: %s", dest, errstr(errno));
		}
	}
	close(fd);
}

// parent_of opens the directory of p (in the root, made first when create is set) and points
// *name at p's last element; on failure it ends the init with "what p: error".
static int parent_of(const char *p, int create, const char **name, const char *what) {
	char parent[PATH_MAX];
	split(p, parent, sizeof parent, name);
	int pd = create ? mkdir_in_root(parent) : open_in_root(parent, O_PATH | O_DIRECTORY);
	if (pd < 0) {
		fail("%s %s: %s", what, p, errstr(errno));
	}
	int dfd = openat(pd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	close(pd);
	if (dfd < 0) {
		fail("%s %s: %s", what, p, errstr(errno));
	}
	return dfd;
}

static void op_mknod(const struct op *o) {
	const char *p = str(o, 0);
	const char *name;
	int dfd = parent_of(p, 1, &name, "create device");
	unlinkat(dfd, name, 0);
	mode_t old = umask(0);
	int r = mknodat(dfd, name, (mode_t)num(o, 0), (dev_t)num(o, 1));
	umask(old);
	if (r < 0) {
		fail("create device %s: %s", p, errstr(errno));
	}
	if (fchownat(dfd, name, (uid_t)num(o, 2), (gid_t)num(o, 3), AT_SYMLINK_NOFOLLOW) < 0) {
		fail("create device %s: %s", p, errstr(errno));
	}
	close(dfd);
}

static void op_symlink(const struct op *o) {
	const char *target = str(o, 0), *p = str(o, 1);
	const char *name;
	int dfd = parent_of(p, 0, &name, "symlink");
	if (num(o, 0)) {
		unlinkat(dfd, name, 0);
	}
	if (symlinkat(target, dfd, name) < 0 && errno != EEXIST) {
		fail("symlink %s: %s", p, errstr(errno));
	}
	close(dfd);
}

// op_pivot makes the rootfs the root and detaches the old one (runc's pivot_root(".", ".")).
static void op_pivot(const char *rootfs) {
	int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (oldroot < 0) {
		fail("open /: %s", errstr(errno));
	}
	int newroot = open(rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (newroot < 0) {
		fail("open rootfs: %s", errstr(errno));
	}
	if (fchdir(newroot) < 0) {
		fail("chdir rootfs: %s", errstr(errno));
	}
	if (syscall(SYS_pivot_root, ".", ".") < 0) {
		fail("pivot_root: %s", errstr(errno));
	}
	if (fchdir(oldroot) < 0) {
		fail("chdir old root: %s", errstr(errno));
	}
	// A slave old root keeps the detach below from propagating to the host.
	if (mount("", ".", "", MS_SLAVE | MS_REC, "") < 0) {
		fail("make old root rslave: %s", errstr(errno));
	}
	if (umount2(".", MNT_DETACH) < 0) {
		fail("detach old root: %s", errstr(errno));
	}
	if (chdir("/") < 0) {
		fail("chdir /: %s", errstr(errno));
	}
	close(oldroot);
	close(newroot);
	if (S.rootfd >= 0) {
		close(S.rootfd);
		S.rootfd = -1;
	}
}

// op_write writes content to p; what names the step in errors, as the Go init does.
static void op_write(const char *p, const char *content, size_t len, const char *what) {
	int fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, content, len) < 0) {
		fail("%s: open %s: %s", *what ? what : "write", p, errstr(errno));
	}
	close(fd);
}

static void op_mask(const char *p) {
	int r = mount("/dev/null", p, "", MS_BIND, "");
	if (r < 0 && errno == ENOTDIR) {
		r = mount("tmpfs", p, "tmpfs", MS_RDONLY, "");
	}
	if (r < 0 && errno != ENOENT) {
		fail("mask %s: %s", p, errstr(errno));
	}
}

static void op_rdonly(const char *p) {
	if (mount(p, p, "", MS_BIND | MS_REC, "") < 0) {
		if (errno == ENOENT) {
			return;
		}
		fail("readonly %s: %s", p, errstr(errno));
	}
	if (mount("", p, "", MS_REMOUNT | MS_RDONLY | MS_BIND | locked_flags(p), "") < 0) {
		fail("remount %s read-only: %s", p, errstr(errno));
	}
}

// op_console allocates a pty in the container's devpts, sends the master to the console socket
// and makes the slave the process's stdio and controlling terminal.
static void op_console(const struct op *o) {
	int master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0) {
		fail("open ptmx: %s", errstr(errno));
	}
	int unlock = 0;
	if (ioctl(master, TIOCSPTLCK, &unlock) < 0) {
		fail("unlockpt: %s", errstr(errno));
	}
	unsigned int n;
	if (ioctl(master, TIOCGPTN, &n) < 0) {
		fail("ptsname: %s", errstr(errno));
	}
	char slave_path[64];
	snprintf(slave_path, sizeof slave_path, "/dev/pts/%u", n);
	if (num(o, 0) != 0 || num(o, 1) != 0) {
		struct winsize ws = {.ws_row = (unsigned short)num(o, 0), .ws_col = (unsigned short)num(o, 1)};
		if (ioctl(master, TIOCSWINSZ, &ws) < 0) {
			fail("set console size: %s", errstr(errno));
		}
	}
	char cbuf[CMSG_SPACE(sizeof(int))];
	memset(cbuf, 0, sizeof cbuf);
	struct iovec iov = {.iov_base = slave_path, .iov_len = strlen(slave_path)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &master, sizeof(int));
	if (sendmsg(FD_CONSOLE, &msg, 0) < 0) {
		fail("send console master: %s", errstr(errno));
	}
	close(FD_CONSOLE);
	int slave = open(slave_path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0) {
		fail("open console slave: %s", errstr(errno));
	}
	if (num(o, 2)) {
		int f = open("/dev/console", O_CREAT | O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (f >= 0) {
			close(f);
			if (mount(slave_path, "/dev/console", "", MS_BIND, "") < 0) {
				fail("bind /dev/console: %s", errstr(errno));
			}
		}
	}
	for (int fd = 0; fd <= 2; fd++) {
		if (dup3(slave, fd, 0) < 0) {
			fail("dup console: %s", errstr(errno));
		}
	}
	if (ioctl(0, TIOCSCTTY, 0) < 0) {
		fail("set controlling terminal: %s", errstr(errno));
	}
	close(slave);
	close(master);
}

// check_exec is lookPath's test: exists, not a directory, some execute bit.
static int check_exec(const char *p, char *why, size_t cap) {
	struct stat st;
	if (stat(p, &st) < 0) {
		snprintf(why, cap, "stat %s: %s", p, errstr(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode) || (st.st_mode & 0111) == 0) {
		snprintf(why, cap, "%s: permission denied", p);
		return -1;
	}
	return 0;
}

// op_lookpath mirrors the Go init's lookPath, messages included (the daemon maps them to exit
// codes 126 and 127 as Docker does).
static void op_lookpath(const char *file, const char *pathenv) {
	char why[PATH_MAX + 64];
	if (strchr(file, '/') != NULL) {
		if (check_exec(file, why, sizeof why) < 0) {
			fail("exec: \"%s\": %s", file, why);
		}
		snprintf(S.path, sizeof S.path, "%s", file);
		return;
	}
	const char *p = pathenv;
	// filepath.SplitList("") is empty: an empty PATH finds nothing (not "./file").
	for (; *pathenv != '\0';) {
		const char *colon = strchr(p, ':');
		size_t n = colon ? (size_t)(colon - p) : strlen(p);
		char dir[PATH_MAX];
		if (n == 0) {
			strcpy(dir, ".");
		} else {
			snprintf(dir, sizeof dir, "%.*s", (int)n, p);
		}
		char cand[PATH_MAX];
		int w = snprintf(cand, sizeof cand, "%s/%s", dir, file);
		if (w > 0 && (size_t)w < sizeof cand && check_exec(cand, why, sizeof why) == 0) {
			// filepath.Join cleans "./x" to "x" and "//x" to "/x"; execve takes either.
			snprintf(S.path, sizeof S.path, "%s", cand);
			return;
		}
		if (colon == NULL) {
			break;
		}
		p = colon + 1;
	}
	fail("exec: \"%s\": executable file not found in $PATH", file);
}

static void push(char ***list, size_t *n, char *s) {
	char **grown = realloc(*list, (*n + 2) * sizeof **list);
	if (grown == NULL) {
		fail("out of memory");
	}
	grown[(*n)++] = s;
	grown[*n] = NULL;
	*list = grown;
}

static void closefds(void) {
	if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) == 0) {
		return;
	}
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL) {
		fail("list fds: %s", errstr(errno));
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name);
		if (fd > 2 && fd != dirfd(d)) {
			fcntl(fd, F_SETFD, FD_CLOEXEC);
		}
	}
	closedir(d);
}

static void ready(void) {
	static const char msg[] = "{\"type\":\"ready\"}\n";
	write_all(FD_SYNC, msg, sizeof msg - 1);
	S.ready_sent = 1;
	close(FD_SYNC);
}

static void wait_start(void) {
	// Blocks until Start opens the fifo for reading. The init may have switched user and
	// dropped its capabilities: the fifo is writable by all (mode 0622) and a process may
	// always reopen its own descriptors through /proc/self/fd. The write end stays open (close-on-exec)
	// until the exec: Start reads EOF exactly when the user's process replaced this one.
	S.fifo = open("/proc/self/fd/4", O_WRONLY | O_CLOEXEC);
	if (S.fifo < 0) {
		fail("open exec fifo: %s", errstr(errno));
	}
	if (write(S.fifo, "0", 1) != 1) {
		fail("write exec fifo: %s", errstr(errno));
	}
	close(FD_FIFO);
}

static void capset_sets(uint64_t eff, uint64_t perm, uint64_t inh) {
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[2] = {
	    {.effective = (uint32_t)eff, .permitted = (uint32_t)perm, .inheritable = (uint32_t)inh},
	    {.effective = (uint32_t)(eff >> 32), .permitted = (uint32_t)(perm >> 32), .inheritable = (uint32_t)(inh >> 32)},
	};
	if (syscall(SYS_capset, &h, d) < 0) {
		fail("apply capabilities: %s", errstr(errno));
	}
}

static int last_cap(void) {
	char b[16] = {0};
	int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		return 40;
	}
	ssize_t n = read(fd, b, sizeof b - 1);
	close(fd);
	return n > 0 ? atoi(b) : 40;
}

static void run(struct op *ops, size_t n) {
	int lastcap = -1;
	for (size_t k = 0; k < n; k++) {
		struct op *o = &ops[k];
		switch (o->code) {
		case CI_SETSID:
			if (setsid() < 0) {
				fail("setsid: %s", errstr(errno));
			}
			break;
		case CI_KEYRING:
			// Kernels without keyrings go without, as with runc.
			if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, str(o, 0), 0, 0, 0) < 0 && errno != ENOSYS) {
				fail("join session keyring: %s", errstr(errno));
			}
			break;
		case CI_UNSHARE:
			if (unshare((int)num(o, 0)) < 0) {
				fail("unshare: %s", errstr(errno));
			}
			break;
		case CI_MOUNT_HOST:
			if (mount(*str(o, 0) ? str(o, 0) : NULL, str(o, 1), *str(o, 2) ? str(o, 2) : NULL,
				  (unsigned long)num(o, 0), *str(o, 3) ? str(o, 3) : NULL) < 0) {
				fail("mount %s: %s", str(o, 1), errstr(errno));
			}
			break;
		case CI_OPEN_ROOT:
			S.rootfd = open(str(o, 0), O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (S.rootfd < 0) {
				fail("open rootfs %s: %s", str(o, 0), errstr(errno));
			}
			break;
		case CI_MOUNT:
			op_mount(o);
			break;
		case CI_MKNOD:
			op_mknod(o);
			break;
		case CI_SYMLINK:
			op_symlink(o);
			break;
		case CI_PIVOT:
			op_pivot(str(o, 0));
			break;
		case CI_WRITE:
			op_write(str(o, 0), str(o, 1), o->ns > 1 ? o->slen[1] : 0, str(o, 2));
			break;
		case CI_MASK:
			op_mask(str(o, 0));
			break;
		case CI_RDONLY:
			op_rdonly(str(o, 0));
			break;
		case CI_REMOUNT_RO:
			if (mount("", str(o, 0), "", MS_REMOUNT | MS_RDONLY | MS_BIND | locked_flags(str(o, 0)), "") < 0) {
				fail("make rootfs read-only: remount %s read-only: %s", str(o, 0), errstr(errno));
			}
			break;
		case CI_PROPAGATE:
			if (mount("", str(o, 0), "", (unsigned long)num(o, 0), "") < 0) {
				fail("rootfs propagation: %s", errstr(errno));
			}
			break;
		case CI_HOSTNAME:
			if (sethostname(str(o, 0), o->ns ? o->slen[0] : 0) < 0) {
				fail("sethostname: %s", errstr(errno));
			}
			break;
		case CI_DOMAINNAME:
			if (setdomainname(str(o, 0), o->ns ? o->slen[0] : 0) < 0) {
				fail("setdomainname: %s", errstr(errno));
			}
			break;
		case CI_CONSOLE:
			op_console(o);
			break;
		case CI_CHDIR:
			if (chdir(str(o, 0)) < 0) {
				fail("chdir to cwd \"%s\": %s", str(o, 0), errstr(errno));
			}
			break;
		case CI_LOOKPATH:
			op_lookpath(str(o, 0), str(o, 1));
			break;
		case CI_ARG:
			push(&S.argv, &S.argc, o->s[0] ? o->s[0] : (char *)"");
			break;
		case CI_ENV:
			push(&S.envp, &S.envc, o->s[0] ? o->s[0] : (char *)"");
			break;
		case CI_CLOSEFDS:
			closefds();
			break;
		case CI_READY:
			ready();
			break;
		case CI_WAIT_START:
			wait_start();
			break;
		case CI_RLIMIT: {
			struct rlimit rl = {.rlim_cur = num(o, 1), .rlim_max = num(o, 2)};
			if (setrlimit((int)num(o, 0), &rl) < 0) {
				fail("setrlimit %s: %s", str(o, 0), errstr(errno));
			}
			break;
		}
		case CI_NNP:
			if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
				fail("set no_new_privs: %s", errstr(errno));
			}
			break;
		case CI_SECCOMP: {
			if (o->ns < 1 || o->slen[0] == 0 || o->slen[0] % sizeof(struct sock_filter) != 0 ||
			    o->slen[0] / sizeof(struct sock_filter) > 0xffff) {
				fail("seccomp filter: bad program of %u bytes", o->ns ? o->slen[0] : 0);
			}
			struct sock_fprog prog = {.len = (unsigned short)(o->slen[0] / sizeof(struct sock_filter)),
						  .filter = (struct sock_filter *)(void *)o->s[0]};
			if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, (unsigned long)num(o, 0), &prog) < 0) {
				fail("load seccomp filter: %s", errstr(errno));
			}
			break;
		}
		case CI_CAPBSET: {
			if (lastcap < 0) {
				lastcap = last_cap();
			}
			uint64_t keep = num(o, 0);
			for (int c = 0; c <= lastcap && c < 64; c++) {
				if (!(keep & (1ull << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL) {
					fail("apply capability bounding set: %s", errstr(errno));
				}
			}
			break;
		}
		case CI_KEEPCAPS:
			if (prctl(PR_SET_KEEPCAPS, (unsigned long)num(o, 0), 0, 0, 0) < 0) {
				fail("keepcaps: %s", errstr(errno));
			}
			break;
		case CI_SETGROUPS: {
			gid_t g[MAX_INTS];
			for (uint32_t j = 0; j < o->ni; j++) {
				g[j] = (gid_t)o->i[j];
			}
			if (setgroups(o->ni, g) < 0 && !(errno == EPERM && o->ni == 0)) {
				fail("setgroups: %s", errstr(errno));
			}
			break;
		}
		case CI_SETGID: {
			gid_t g = (gid_t)num(o, 0);
			if (syscall(SYS_setresgid, g, g, g) < 0) {
				fail("setgid %u: %s", (unsigned)g, errstr(errno));
			}
			break;
		}
		case CI_SETUID: {
			uid_t u = (uid_t)num(o, 0);
			if (syscall(SYS_setresuid, u, u, u) < 0) {
				fail("setuid %u: %s", (unsigned)u, errstr(errno));
			}
			break;
		}
		case CI_UMASK:
			umask((mode_t)num(o, 0));
			break;
		case CI_CAPSET:
			capset_sets(num(o, 0), num(o, 1), num(o, 2));
			break;
		case CI_AMBIENT: {
			if (lastcap < 0) {
				lastcap = last_cap();
			}
			uint64_t amb = num(o, 0);
			if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
				fail("apply capabilities: ambient: %s", errstr(errno));
			}
			for (int c = 0; c <= lastcap && c < 64; c++) {
				if ((amb & (1ull << c)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0) {
					fail("apply capabilities: ambient %d: %s", c, errstr(errno));
				}
			}
			break;
		}
		case CI_JOINED: {
			char c;
			ssize_t r;
			while ((r = read(FD_SYNC, &c, 1)) < 0 && errno == EINTR) {
			}
			if (r != 1) {
				fail("wait for the cgroup: %s", r < 0 ? errstr(errno) : "the runtime went away");
			}
			break;
		}
		case CI_EXEC:
			if (S.argc == 0) {
				fail("process is not set");
			}
			execve(S.path, S.argv, S.envp ? S.envp : (char *[]){NULL});
			fail("exec %s: %s", S.argv[0], errstr(errno));
		default:
			fail("unknown op %u", o->code);
		}
	}
	fail("init returned without exec");
}

// reset_signals gives the container the signal state of a fresh process: the shim ignores SIGHUP,
// SIGINT and SIGPIPE and a caller of `berth oci` may ignore or block others, and both survive
// execve. A container started with SIGPIPE ignored sees EPIPE instead of dying in a closed
// pipeline, and one with SIGINT ignored does not stop on ^C.
static void reset_signals(void) {
	// The raw system call: glibc's sigaction refuses the signals it keeps for itself (32, 33),
	// which a parent may have ignored all the same. An all-zero action is SIG_DFL on every ABI.
	for (int sig = 1; sig <= 64; sig++) {
		unsigned long old[4] = {0}, dfl[4] = {0};
		if (syscall(SYS_rt_sigaction, sig, NULL, old, 8) == 0 && old[0] == (unsigned long)SIG_IGN) {
			syscall(SYS_rt_sigaction, sig, dfl, NULL, 8);
		}
	}
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

// berth_cinit runs the program from the sync socket when the runtime asked for the C init; it
// never returns then.
// is_init_cmd reports whether this process is `berth init`: the variable alone must not turn
// any other berth process (the --init of a container whose image sets it, say) into an init.
static int is_init_cmd(void) {
	char b[64];
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		return 0;
	}
	ssize_t n = read(fd, b, sizeof b - 1);
	close(fd);
	if (n <= 0) {
		return 0;
	}
	b[n] = '\0';
	size_t a0 = strlen(b);
	return (ssize_t)a0 + 1 < n && strcmp(b + a0 + 1, "init") == 0;
}

// berth_join_namespaces joins the namespaces of spec, a newline-separated list of "flag:path"
// entries (flag: the CLONE_NEW* value in decimal) in the caller's order; on failure it writes a
// message to stderr and exits. It must run before any thread exists.
void berth_join_namespaces(const char *spec) {
	char *copy = strdup(spec);
	if (copy == NULL) {
		fprintf(stderr, "berth nsenter: out of memory\n");
		_exit(1);
	}
	int fds[16];
	int flags[16];
	int n = 0;
	char *save = NULL;
	for (char *tok = strtok_r(copy, "\n", &save); tok != NULL && n < 16; tok = strtok_r(NULL, "\n", &save)) {
		char *colon = strchr(tok, ':');
		if (colon == NULL) {
			fprintf(stderr, "berth nsenter: bad entry %s\n", tok);
			_exit(1);
		}
		*colon = '\0';
		flags[n] = atoi(tok);
		fds[n] = open(colon + 1, O_RDONLY | O_CLOEXEC);
		if (fds[n] < 0) {
			fprintf(stderr, "berth nsenter: open %s: %s\n", colon + 1, strerror(errno));
			_exit(1);
		}
		n++;
	}
	for (int i = 0; i < n; i++) {
		if (setns(fds[i], flags[i]) < 0) {
			fprintf(stderr, "berth nsenter: setns %d: %s\n", flags[i], strerror(errno));
			_exit(1);
		}
		close(fds[i]);
	}
	free(copy);
}

// start reads the program from the sync socket and runs it; it never returns.
static void start(void) {
	reset_signals();
	fcntl(FD_SYNC, F_SETFD, FD_CLOEXEC);
	uint32_t hdr[2];
	errno = 0;  // a short read leaves it alone
	if (read_full(FD_SYNC, hdr, sizeof hdr) < 0) {
		fail("read config: %s", errno ? errstr(errno) : "short read");
	}
	if (hdr[0] != BERTH_CINIT_MAGIC || hdr[1] > MAX_PROGRAM) {
		fail("read config: bad header");
	}
	unsigned char *b = malloc(hdr[1] ? hdr[1] : 1);
	if (b == NULL) {
		fail("read config: out of memory");
	}
	if (read_full(FD_SYNC, b, hdr[1]) < 0) {
		fail("read config: %s", errno ? errstr(errno) : "short read");
	}
	size_t n;
	struct op *ops = parse(b, hdr[1], &n);
	free(b);
	run(ops, n);
}

void berth_cinit(void) {
	const char *env = getenv(BERTH_CINIT_ENV);
	if (env == NULL || *env == '\0' || !is_init_cmd()) {
		return;
	}
	unsetenv(BERTH_CINIT_ENV);
	start();
}

// berth_cinit_direct is the C init for a process that is already a copy of a single-threaded C
// process (a spare shim's child, see cshim.c) rather than an exec of "berth init": it joins the
// namespaces of nsenter (NULL or empty: none) and runs the program from fd 3, with fd 4 and
// fd 5 as for berth_cinit. It never returns.
void berth_cinit_direct(const char *nsenter) {
	if (nsenter != NULL && *nsenter != '\0') {
		berth_join_namespaces(nsenter);
	}
	start();
}
