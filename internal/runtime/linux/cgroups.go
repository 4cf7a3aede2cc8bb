package linux

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// cgroupState is what the runtime persists about a container's cgroup so that any later
// invocation (another `berth oci` process, a restarted shim) finds the same directories even if
// its own cgroup differs from the creator's.
type cgroupState struct {
	// V1 maps each v1 controller name to the container's path inside that hierarchy.
	V1 map[string]string `json:"v1,omitempty"`
	// V2 is the container's path inside the unified hierarchy.
	V2 string `json:"v2,omitempty"`
}

// Stats is a point-in-time resource usage sample of a container's cgroup.
type Stats struct {
	CPUUsageNS  uint64 `json:"cpuUsageNs"`
	MemoryUsage uint64 `json:"memoryUsage"`
	MemoryLimit uint64 `json:"memoryLimit"`
	Pids        uint64 `json:"pids"`
}

const unifiedMountpoint = "/sys/fs/cgroup"

// cgroupIsV2 reports whether the host runs the unified (v2-only) hierarchy. Hybrid hosts, whose
// v2 mount carries no useful controllers, use v1.
func cgroupIsV2() bool { return cgroups.Mode() == cgroups.Unified }

// defaultDeviceRules are always allowed when the spec restricts devices at all, so that the
// devices the runtime itself creates in /dev stay usable.
func defaultDeviceRules() []specs.LinuxDeviceCgroup {
	c := func(major, minor int64) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Minor: &minor, Access: "rwm"}
	}
	return []specs.LinuxDeviceCgroup{c(1, 3), c(1, 5), c(1, 7), c(1, 8), c(1, 9), c(5, 0), c(5, 1), c(5, 2), c(136, -1)}
}

// cgroupPlan is where a container's cgroup goes, worked out before anything is created.
type cgroupPlan struct {
	state cgroupState
	// v1 are the mounted v1 controllers (empty on a unified host).
	v1 []cgroup1.Subsystem
}

// Host is what a Runtime would otherwise look up about the host for every container: the
// cgroup controllers and where the calling process sits in them (containerd/cgroups parses
// /proc/self/mountinfo once per controller for that, ~1 ms). ProbeHost returns one.
type Host struct {
	v2  bool
	v1  []cgroup1.Subsystem
	own cgroup1.Path // the caller's own cgroup in each v1 controller
}

// ProbeHost looks the host up once for a long-lived caller (the daemon); nil when it cannot,
// and a Runtime then looks up for itself.
func ProbeHost() *Host {
	h, err := probeHost()
	if err != nil {
		return nil
	}
	return h
}

// probeHost looks the host up.
func probeHost() (*Host, error) {
	if cgroupIsV2() {
		return &Host{v2: true}, nil
	}
	subsystems, err := cgroup1.Default()
	if err != nil {
		return nil, fmt.Errorf("list cgroup v1 controllers: %w", err)
	}
	return &Host{v1: subsystems, own: cgroup1.NestedPath("")}, nil
}

// planCgroup places the container's cgroup at cgroupsPath (absolute: from the hierarchy root;
// relative or empty: under the caller's own cgroup, so berth run inside a cgroup stays inside
// it) without creating it. host may be nil.
func planCgroup(id, cgroupsPath string, host *Host) (cgroupPlan, error) {
	if cgroupsPath == "" {
		cgroupsPath = filepath.Join("berth", id)
	}
	if strings.Contains(cgroupsPath, "..") {
		return cgroupPlan{}, fmt.Errorf("cgroupsPath %q must not contain \"..\"", cgroupsPath)
	}
	if host == nil {
		var err error
		if host, err = probeHost(); err != nil {
			return cgroupPlan{}, err
		}
	}
	if host.v2 {
		group := cgroupsPath
		if !filepath.IsAbs(group) {
			_, own, err := cgroups.ParseCgroupFileUnified("/proc/self/cgroup")
			if err != nil {
				return cgroupPlan{}, fmt.Errorf("read own cgroup: %w", err)
			}
			group = filepath.Join("/", own, group)
		}
		return cgroupPlan{state: cgroupState{V2: group}}, nil
	}
	paths := map[string]string{}
	for _, s := range host.v1 {
		if filepath.IsAbs(cgroupsPath) {
			paths[string(s.Name())] = cgroupsPath
			continue
		}
		own, err := host.own(s.Name())
		if err != nil {
			continue // controller not mounted for us
		}
		paths[string(s.Name())] = filepath.Join(own, cgroupsPath)
	}
	return cgroupPlan{state: cgroupState{V1: paths}, v1: host.v1}, nil
}

// makeCgroup creates the planned cgroup and applies the spec's resources. On failure it
// removes what it made.
func makeCgroup(plan cgroupPlan, res *specs.LinuxResources, devs []specs.LinuxDevice) error {
	if res == nil {
		res = &specs.LinuxResources{}
	}
	r := *res
	if len(r.Devices) > 0 {
		r.Devices = append(append([]specs.LinuxDeviceCgroup{}, r.Devices...), defaultDeviceRules()...)
		// Devices the spec asks the runtime to create must also be usable (runc does the same).
		for _, d := range devs {
			major, minor := d.Major, d.Minor
			typ := d.Type
			if typ == "u" {
				typ = "c"
			}
			if typ == "p" {
				continue
			}
			r.Devices = append(r.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: &major, Minor: &minor, Access: "rwm"})
		}
	}
	st := plan.state
	if st.V2 != "" {
		v2res := cgroup2.ToResources(&r)
		v2res.Devices = r.Devices
		if _, err := cgroup2.NewManager(unifiedMountpoint, st.V2, v2res); err != nil {
			return fmt.Errorf("create cgroup %s: %w", st.V2, err)
		}
		return nil
	}
	err := makeV1Fast(st, &r)
	if errors.Is(err, errSlowPath) {
		_, err = cgroup1.New(v1Path(st.V1), &r, cgroup1.WithHierarchy(onlyHierarchy(plan.v1)))
	}
	if err != nil {
		cleanupErr := removeCgroupDirs(st)
		return errors.Join(fmt.Errorf("create cgroup: %w", err), cleanupErr)
	}
	return nil
}

var errSlowPath = errors.New("needs containerd/cgroups")

// makeV1Fast creates a v1 cgroup that needs device rules at most (Docker's usual container)
// with plain mkdirs and writes: containerd/cgroups costs five times as much (it walks up the
// cpuset parents and rewrites their values every time). Anything else, or a parent that does
// not exist yet, is left to containerd/cgroups (errSlowPath), which tolerates what was made.
func makeV1Fast(st cgroupState, r *specs.LinuxResources) error {
	if r.Memory != nil || r.CPU != nil || r.Pids != nil || r.BlockIO != nil || len(r.HugepageLimits) > 0 ||
		r.Network != nil || len(r.Rdma) > 0 || len(r.Unified) > 0 {
		return errSlowPath
	}
	for ctl := range st.V1 {
		d := st.v1Dir(ctl)
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			if errors.Is(err, os.ErrNotExist) {
				return errSlowPath
			}
			return err
		}
		if ctl == string(cgroup1.Cpuset) {
			// A new cpuset group starts with no CPUs and no memory nodes: inherit the parent's.
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				own, err := os.ReadFile(filepath.Join(d, f))
				if err != nil {
					return err
				}
				if len(bytes.TrimSpace(own)) > 0 {
					continue
				}
				parent, err := os.ReadFile(filepath.Join(filepath.Dir(d), f))
				if err != nil {
					return err
				}
				if len(bytes.TrimSpace(parent)) == 0 {
					// A parent without CPUs: containerd/cgroups fills the ancestors in.
					return errSlowPath
				}
				if err := writeFile(filepath.Join(d, f), parent); err != nil {
					return err
				}
			}
		}
	}
	if d := st.v1Dir(string(cgroup1.Devices)); d != "" && len(r.Devices) > 0 {
		return writeDeviceRules(d, r.Devices)
	}
	return nil
}

// writeDeviceRules applies rules in order to the v1 devices cgroup in dir. The kernel takes one
// rule per write(2), so each file is opened once for all its rules (Docker's usual container has
// two dozen).
func writeDeviceRules(dir string, rules []specs.LinuxDeviceCgroup) (retErr error) {
	var allow, deny *os.File
	defer func() {
		for _, f := range []*os.File{allow, deny} {
			if f != nil {
				if err := f.Close(); err != nil && retErr == nil {
					retErr = err
				}
			}
		}
	}()
	open := func(f **os.File, name string) (*os.File, error) {
		if *f == nil {
			var err error
			if *f, err = os.OpenFile(filepath.Join(dir, name), os.O_WRONLY, 0); err != nil {
				return nil, err
			}
		}
		return *f, nil
	}
	for _, dev := range rules {
		f, err := open(&deny, "devices.deny")
		if dev.Allow {
			f, err = open(&allow, "devices.allow")
		}
		if err != nil {
			return err
		}
		typ := dev.Type
		if typ == "" {
			typ = "a"
		}
		rule := fmt.Sprintf("%s %s:%s %s", typ, deviceNumber(dev.Major), deviceNumber(dev.Minor), dev.Access)
		if _, err := f.WriteString(rule); err != nil {
			return fmt.Errorf("write %s to %s: %w", rule, f.Name(), err)
		}
	}
	return nil
}

func deviceNumber(n *int64) string {
	if n == nil || *n == -1 {
		return "*"
	}
	return strconv.FormatInt(*n, 10)
}

func onlyHierarchy(s []cgroup1.Subsystem) cgroup1.Hierarchy {
	return func() ([]cgroup1.Subsystem, error) { return s, nil }
}

func v1Path(paths map[string]string) cgroup1.Path {
	return func(name cgroup1.Name) (string, error) {
		if p, ok := paths[string(name)]; ok {
			return p, nil
		}
		return "", cgroup1.ErrControllerNotActive
	}
}

// v1Dir returns the directory of controller ctl for the container, or "".
func (c cgroupState) v1Dir(ctl string) string {
	p, ok := c.V1[ctl]
	if !ok {
		return ""
	}
	return filepath.Join(unifiedMountpoint, ctl, p)
}

func (c cgroupState) v2Dir() string { return filepath.Join(unifiedMountpoint, c.V2) }

// procsFile is a cgroup.procs file that lists every process of the container.
func (c cgroupState) procsDir() string {
	if c.V2 != "" {
		return c.v2Dir()
	}
	for _, ctl := range []string{"freezer", "pids", "memory", "cpu", "devices"} {
		if d := c.v1Dir(ctl); d != "" {
			return d
		}
	}
	return ""
}

// addProc moves pid into every controller of the container's cgroup.
func (c cgroupState) addProc(pid int) error {
	b := []byte(strconv.Itoa(pid))
	if c.V2 != "" {
		return writeFile(filepath.Join(c.v2Dir(), "cgroup.procs"), b)
	}
	for ctl := range c.V1 {
		if err := writeFile(filepath.Join(c.v1Dir(ctl), "cgroup.procs"), b); err != nil {
			return err
		}
	}
	return nil
}

// PrimeCgroupMigration moves the calling process into the cgroup it is already in: a no-op for
// the process, but the kernel takes the global cgroup_threadgroup_rwsem for writing, and the
// first writer after a quiet spell waits for an RCU grace period (~8-20 ms with HZ=250) while
// writers shortly after it do not. A runtime about to move a container's init into its cgroup
// starts this first, so the grace period passes while it prepares. Errors are ignored: it is
// only an optimization, and the caller may not be allowed to write its own cgroup. It blocks
// for the grace period; call it in a goroutine. (A daemon calls it as it launches a process
// that will create a container.)
func (r *Runtime) PrimeCgroupMigration() { primeCgroupMigration() }

func primeCgroupMigration() {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	v2 := cgroupIsV2()
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var dir string
		switch {
		case v2 && parts[0] == "0":
			dir = filepath.Join(unifiedMountpoint, parts[2])
		case !v2 && parts[1] != "" && !strings.HasPrefix(parts[1], "name="):
			dir = filepath.Join(unifiedMountpoint, parts[1], parts[2])
		default:
			continue
		}
		if filepath.Clean(dir) != dir || !strings.HasPrefix(dir, unifiedMountpoint+"/") {
			continue
		}
		if os.WriteFile(filepath.Join(dir, "cgroup.procs"), pid, 0) == nil {
			return
		}
	}
}

func writeFile(p string, b []byte) error {
	if err := os.WriteFile(p, b, 0); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// pids lists every process in the container's cgroup tree.
func (c cgroupState) pids() ([]int, error) {
	root := c.procsDir()
	if root == "" {
		return nil, nil
	}
	var out []int
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		for _, l := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(l); err == nil {
				out = append(out, n)
			}
		}
		return nil
	})
	return out, err
}

// freeze freezes (or thaws) the container and waits until the kernel reports the new state.
func (c cgroupState) freeze(frozen bool) error {
	if c.V2 != "" {
		m, err := cgroup2.Load(c.V2, cgroup2.WithMountpoint(unifiedMountpoint))
		if err != nil {
			return fmt.Errorf("load cgroup: %w", err)
		}
		if frozen {
			return m.Freeze()
		}
		return m.Thaw()
	}
	if c.v1Dir("freezer") == "" {
		return errors.New("freezer cgroup controller is not available")
	}
	cg, err := cgroup1.Load(v1Path(c.V1), cgroup1.WithHierarchy(cgroup1.Default))
	if err != nil {
		return fmt.Errorf("load cgroup: %w", err)
	}
	if frozen {
		return cg.Freeze()
	}
	return cg.Thaw()
}

// isFrozen reports whether the container's cgroup is frozen.
func (c cgroupState) isFrozen() bool {
	if c.V2 != "" {
		b, err := os.ReadFile(filepath.Join(c.v2Dir(), "cgroup.freeze"))
		return err == nil && strings.TrimSpace(string(b)) == "1"
	}
	d := c.v1Dir("freezer")
	if d == "" {
		return false
	}
	b, err := os.ReadFile(filepath.Join(d, "freezer.state"))
	return err == nil && strings.TrimSpace(string(b)) != "THAWED"
}

// stats samples cpu, memory and pids usage.
func (c cgroupState) stats() (*Stats, error) {
	if c.V2 != "" {
		m, err := cgroup2.Load(c.V2, cgroup2.WithMountpoint(unifiedMountpoint))
		if err != nil {
			return nil, fmt.Errorf("load cgroup: %w", err)
		}
		mt, err := m.Stat()
		if err != nil {
			return nil, fmt.Errorf("cgroup stats: %w", err)
		}
		s := &Stats{}
		if mt.CPU != nil {
			s.CPUUsageNS = mt.CPU.UsageUsec * 1000
		}
		if mt.Memory != nil {
			s.MemoryUsage, s.MemoryLimit = mt.Memory.Usage, mt.Memory.UsageLimit
		}
		if mt.Pids != nil {
			s.Pids = mt.Pids.Current
		}
		return s, nil
	}
	cg, err := cgroup1.Load(v1Path(c.V1), cgroup1.WithHierarchy(cgroup1.Default))
	if err != nil {
		return nil, fmt.Errorf("load cgroup: %w", err)
	}
	mt, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return nil, fmt.Errorf("cgroup stats: %w", err)
	}
	s := &Stats{}
	if mt.CPU != nil && mt.CPU.Usage != nil {
		s.CPUUsageNS = mt.CPU.Usage.Total
	}
	if mt.Memory != nil && mt.Memory.Usage != nil {
		s.MemoryUsage, s.MemoryLimit = mt.Memory.Usage.Usage, mt.Memory.Usage.Limit
	}
	if mt.Pids != nil {
		s.Pids = mt.Pids.Current
	}
	return s, nil
}

// oomKilled reports whether the kernel OOM killer killed a process of the container: v1's
// memory.oom_control "oom_kill" counter, v2's memory.events "oom_kill".
func (c cgroupState) oomKilled() (bool, error) {
	var p string
	if c.V2 != "" {
		p = filepath.Join(c.v2Dir(), "memory.events")
	} else {
		d := c.v1Dir("memory")
		if d == "" {
			return false, nil
		}
		p = filepath.Join(d, "memory.oom_control")
	}
	b, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("read %s: %w", p, err)
	}
	return parseKeyedCount(b, "oom_kill") > 0, nil
}

// parseKeyedCount returns the value of key in a "key value" per line cgroup file, or 0.
func parseKeyedCount(b []byte, key string) uint64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == key {
			n, err := strconv.ParseUint(f[1], 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return 0
}

// killAll sends sig to every process of the container. For SIGKILL the cgroup is frozen first so
// that nothing can fork between listing and killing (runc does the same).
func (c cgroupState) killAll(sig syscall.Signal) error {
	if sig == syscall.SIGKILL {
		if c.V2 != "" {
			if err := writeFile(filepath.Join(c.v2Dir(), "cgroup.kill"), []byte("1")); err == nil {
				return nil
			}
		}
		if err := c.freeze(true); err == nil {
			defer func() { _ = c.freeze(false) }()
		}
	}
	pids, err := c.pids()
	if err != nil {
		return fmt.Errorf("list container processes: %w", err)
	}
	for _, p := range pids {
		if err := syscall.Kill(p, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill %d: %w", p, err)
		}
	}
	return nil
}

// remove deletes the container's cgroup directories, waiting briefly for exiting processes to
// leave them.
func (c cgroupState) remove() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := removeCgroupDirs(c)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func removeCgroupDirs(c cgroupState) error {
	var dirs []string
	if c.V2 != "" {
		dirs = append(dirs, c.v2Dir())
	}
	for ctl := range c.V1 {
		dirs = append(dirs, c.v1Dir(ctl))
	}
	var errs []error
	for _, d := range dirs {
		if err := removeTree(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeTree removes a cgroup directory and its children, deepest first (cgroup directories can
// only be rmdir'ed, never unlinked file by file).
func removeTree(d string) error {
	entries, err := os.ReadDir(d)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(d, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("remove cgroup %s: %w", d, err)
	}
	return nil
}
