// Package testutil holds helpers shared by berth's tests: root checks and the busybox test image
// built from Debian's busybox-static. It must never be imported by non-test code.
package testutil

import (
	"archive/tar"
	"bytes"
	"fmt"
	"github.com/berth-dev/berth/internal/cgroupfs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BusyboxPath is where Debian's busybox-static package installs its binary.
const BusyboxPath = "/bin/busybox"

// RequireRoot skips the test unless it runs as root, saying why.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: this test needs root (it uses the real kernel: mounts, namespaces, cgroups)")
	}
}

// RequireBusybox skips the test when the static busybox is missing.
func RequireBusybox(t testing.TB) {
	t.Helper()
	if !isStaticBusybox(BusyboxPath) {
		t.Skip("skipping: static busybox not found at " + BusyboxPath + " (run scripts/install-deps.sh)")
	}
}

func isStaticBusybox(p string) bool {
	out, err := exec.Command("file", "-L", p).Output()
	if err != nil {
		// `file` may be absent; fall back to existence.
		_, serr := os.Stat(p)
		return serr == nil
	}
	return bytes.Contains(out, []byte("statically linked")) || bytes.Contains(out, []byte("static-pie"))
}

// busyboxApplets lists the applets the busybox binary provides, one per line of `busybox --list`.
func busyboxApplets(t testing.TB) []string {
	t.Helper()
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	var applets []string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && l != "busybox" && !strings.Contains(l, "/") {
			applets = append(applets, l)
		}
	}
	sort.Strings(applets)
	return applets
}

// BusyboxRootfs writes a minimal busybox root filesystem into dir: /bin/busybox with a symlink per
// applet, /etc/passwd and /etc/group with root and nobody, and the usual empty directories.
func BusyboxRootfs(t testing.TB, dir string) {
	t.Helper()
	RequireBusybox(t)
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev", "root", "home", "var", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range busyboxApplets(t) {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	for name, content := range etcFiles {
		if err := os.WriteFile(filepath.Join(dir, "etc", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var etcFiles = map[string]string{
	"passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
	"group":  "root:x:0:\nnobody:x:65534:\n",
}

// BusyboxTar returns an uncompressed tar of the busybox root filesystem, suitable for
// `docker import` / POST /images/create?fromSrc=-. Entries are sorted and timestamps fixed, so the
// tar, and therefore the layer digest, is the same on every call.
func BusyboxTar(t testing.TB) []byte {
	t.Helper()
	RequireBusybox(t)
	data, err := os.ReadFile(BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1700000000, 0).UTC()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
	}
	file := func(name string, mode int64, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(b)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"bin", "dev", "etc", "home", "proc", "root", "sys", "usr", "usr/bin", "var"} {
		dir(d, 0o755)
	}
	dir("tmp", 0o1777)
	file("bin/busybox", 0o755, data)
	for _, a := range busyboxApplets(t) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
	}
	names := make([]string, 0, len(etcFiles))
	for n := range etcFiles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		file("etc/"+n, 0o644, []byte(etcFiles[n]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Mounted reports whether target is a mount point in this mount namespace.
func Mounted(t testing.TB, target string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == target {
			return true
		}
	}
	return false
}

// RemoveCgroup removes an (empty) cgroup at path relative to every hierarchy root, v1 and v2,
// and relative to the test process's own cgroup in each hierarchy: the runtime nests a relative
// cgroups path under its caller's cgroup, which is not the root on hosts (and CI sandboxes) that
// put each session in a cgroup of its own.
func RemoveCgroup(path string) { cgroupfs.RemoveEmpty(path) }

// BuildBerth builds cmd/berth into out the way the Makefile does: statically linked, so that the
// same binary also runs inside containers as their `--init`. Keep the flags in step with the
// Makefile's BUILD_FLAGS.
func BuildBerth(out string) error {
	cmd := exec.Command("go", "build", "-tags", "netgo,osusergo",
		"-ldflags", "-linkmode external -extldflags -static",
		"-o", out, "github.com/berth-dev/berth/cmd/berth")
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("build berth: %w\n%s", err, b)
	}
	return nil
}

// OpenPty allocates a pseudo-terminal pair from /dev/ptmx, for tests that drive interactive
// programs (docker run -it, berth exec -t).
func OpenPty() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, err
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	_ = unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 80})
	return master, slave, nil
}
