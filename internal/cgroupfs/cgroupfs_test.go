package cgroupfs_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/cgroupfs"
	"github.com/berth-dev/berth/internal/testutil"
)

// TestRemoveEmpty makes the directories the runtime would make for a relative cgroups path (under
// each hierarchy's root and under this process's own cgroup) and checks that all go.
func TestRemoveEmpty(t *testing.T) {
	testutil.RequireRoot(t)
	rel := "berth-cgroupfs-test-" + strconv.Itoa(os.Getpid())
	var made []string
	mk := func(dir string) {
		if err := os.Mkdir(dir, 0o755); err == nil {
			made = append(made, dir)
		}
	}
	t.Cleanup(func() {
		for _, d := range made {
			_ = os.Remove(d)
		}
	})
	ents, _ := os.ReadDir(cgroupfs.Root)
	for _, e := range ents {
		if e.IsDir() {
			mk(filepath.Join(cgroupfs.Root, e.Name(), rel))
		}
	}
	b, _ := os.ReadFile("/proc/self/cgroup")
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || parts[2] == "/" || parts[0] == "0" {
			continue
		}
		mount := strings.TrimPrefix(strings.Split(parts[1], ",")[0], "name=")
		mk(filepath.Join(cgroupfs.Root, mount, parts[2], rel))
	}
	if len(made) == 0 {
		t.Skip("no cgroup hierarchy to write to")
	}
	cgroupfs.RemoveEmpty(rel)
	for _, d := range made {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s is still there (%v)", d, err)
		}
	}
}

func TestRemoveEmptyNeverTheRoot(t *testing.T) {
	for _, rel := range []string{"", "/", ".", "..", "../.."} {
		cgroupfs.RemoveEmpty(rel) // must not try to remove a hierarchy root
	}
}
