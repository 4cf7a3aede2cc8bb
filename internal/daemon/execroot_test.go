package daemon

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/internal/testutil"
	"golang.org/x/sys/unix"
)

func onTmpfs(t *testing.T, dir string) bool {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Type == unix.TMPFS_MAGIC
}

// TestExecRootOnTmpfs: an empty exec root on disk gets a tmpfs, once; one that holds files
// (an earlier daemon's state) is left where it is.
func TestExecRootOnTmpfs(t *testing.T) {
	testutil.RequireRoot(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	base := t.TempDir()
	if onTmpfs(t, base) {
		t.Skip("skipping: the temporary directory is on a tmpfs already")
	}
	empty, used := filepath.Join(base, "empty"), filepath.Join(base, "used")
	for _, d := range []string{empty, used} {
		if err := os.Mkdir(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(used, "state"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(empty, unix.MNT_DETACH) })
	execRootOnTmpfs(empty, log)
	execRootOnTmpfs(used, log)
	if !onTmpfs(t, empty) || onTmpfs(t, used) {
		t.Fatalf("tmpfs: empty %v, used %v; want true, false", onTmpfs(t, empty), onTmpfs(t, used))
	}
	// A second start finds its tmpfs and mounts nothing over it.
	if err := os.WriteFile(filepath.Join(empty, "sock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	execRootOnTmpfs(empty, log)
	if _, err := os.Stat(filepath.Join(empty, "sock")); err != nil {
		t.Errorf("a second start hid the exec root's files: %v", err)
	}
}
