// Package cgroupfs removes empty cgroup directories the way the runtime lays them out: a
// relative cgroups path lives under every hierarchy's root and, when the caller itself sits in
// a non-root cgroup of a hierarchy (a session manager or sandbox put it there), under that
// cgroup too. It only removes empty directories; it never kills or moves processes.
package cgroupfs

import (
	"os"
	"path/filepath"
	"strings"
)

// Root is where the cgroup hierarchies are mounted.
const Root = "/sys/fs/cgroup"

// RemoveEmpty removes the (empty) cgroup at the relative path rel in every hierarchy, v1 and v2,
// both from the hierarchy's root and from the calling process's own cgroup. Errors (busy, not
// there) are ignored: it is cleanup.
func RemoveEmpty(rel string) {
	rel = filepath.Clean("/" + rel)
	if rel == "/" {
		return
	}
	_ = os.Remove(filepath.Join(Root, rel))
	ents, _ := os.ReadDir(Root)
	for _, e := range ents {
		if e.IsDir() {
			_ = os.Remove(filepath.Join(Root, e.Name(), rel))
		}
	}
	b, _ := os.ReadFile("/proc/self/cgroup")
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || parts[2] == "/" {
			continue
		}
		mount := strings.TrimPrefix(strings.Split(parts[1], ",")[0], "name=")
		if parts[0] == "0" {
			mount = ""
		}
		_ = os.Remove(filepath.Join(Root, mount, parts[2], rel))
	}
}
