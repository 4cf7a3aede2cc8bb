package linux

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// containerState is persisted as <root>/<id>/state.json. It is written by Create and read by
// every later command, possibly from other processes.
type containerState struct {
	ID          string            `json:"id"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Pid         int               `json:"pid"`
	StartTime   uint64            `json:"startTime"` // of Pid, from /proc/<pid>/stat; guards against PID reuse
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Cgroup      cgroupState       `json:"cgroup"`
	// Spec is what Start and Delete need from the spec, so that they need not read and parse
	// config.json (with its seccomp profile) on every container's way in and out. Nil in state
	// written by older versions, where they fall back to config.json.
	Spec *specInfo `json:"spec,omitempty"`
}

type specInfo struct {
	NoProcess bool         `json:"noProcess,omitempty"`
	Poststart []specs.Hook `json:"poststart,omitempty"`
	Poststop  []specs.Hook `json:"poststop,omitempty"`
}

// specInfo returns st.Spec, or reads it from the container's config.json for old state.
func (r *Runtime) specInfo(st *containerState) *specInfo {
	if st.Spec != nil {
		return st.Spec
	}
	info := &specInfo{}
	if sp, err := r.loadSpec(st.ID); err == nil {
		info.NoProcess = sp.Process == nil || len(sp.Process.Args) == 0
		if sp.Hooks != nil {
			info.Poststart, info.Poststop = sp.Hooks.Poststart, sp.Hooks.Poststop
		}
	}
	return info
}

// validIDChars is runc's rule for container IDs, ^[\w+\-.]+$.
func validIDChars(id string) bool {
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validateID accepts runc's container ids; anything else could escape the state directory.
func validateID(id string) error {
	if id == "" || id == "." || id == ".." || len(id) > 1024 || !validIDChars(id) {
		return fmt.Errorf("invalid container id %q: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

func (r *Runtime) dir(id string) string { return filepath.Join(r.Root, id) }

func (r *Runtime) fifoPath(id string) string { return filepath.Join(r.dir(id), "exec.fifo") }

// errNotExist is runc's message for an unknown container; callers match it with errdefs.IsNotFound.
func errNotExist(id string) error {
	return fmt.Errorf("container %q does not exist: %w", id, errdefs.ErrNotFound)
}

func (r *Runtime) load(id string) (*containerState, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(r.dir(id), "state.json"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errNotExist(id)
		}
		return nil, fmt.Errorf("read state of %s: %w", id, err)
	}
	var st containerState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decode state of %s: %v: %w", id, err, errCorruptState)
	}
	return &st, nil
}

// errCorruptState marks a state file that cannot be decoded: state files are written without
// fsync (see writeStateFile), so a host crash can leave one empty.
var errCorruptState = errors.New("corrupt container state")

func (r *Runtime) loadSpec(id string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(r.dir(id), "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read config of %s: %w", id, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode config of %s: %w", id, err)
	}
	return &s, nil
}

// writeFileAtomic writes data to path via a temporary file, fsync and rename, so readers see
// either the old or the new content, never a torn one, even after a host crash.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeFileRename(path, data, perm, true)
}

// writeStateFile is writeFileAtomic without the fsync, for the container state under Root.
// That state describes processes, which a host crash ends anyway: after a reboot a state file
// names a dead init (its start time cannot match) and reads as stopped, whatever its content,
// and Root normally lives on a tmpfs (/run) where fsync does nothing. Against a crash of the
// writing process alone the rename suffices: the page cache is shared. What outlives a host
// crash (the daemon's records in bbolt) is written durably by its owner.
func writeStateFile(path string, data []byte, perm os.FileMode) error {
	return writeFileRename(path, data, perm, false)
}

func writeFileRename(path string, data []byte, perm os.FileMode, sync bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Chmod(perm)
	}
	if werr == nil && sync {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, werr)
	}
	return nil
}

func (r *Runtime) save(st *containerState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	return writeStateFile(filepath.Join(r.dir(st.ID), "state.json"), b, 0o600)
}

// procStartTime returns field 22 (starttime) of /proc/<pid>/stat and whether the process is a
// zombie.
func procStartTime(pid int) (uint64, bool, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false, err
	}
	return parseProcStat(b)
}

// parseProcStat extracts the state and start time from a /proc/<pid>/stat line. The command
// name (field 2) may contain spaces and parentheses, so parsing starts after the last ')'.
func parseProcStat(b []byte) (uint64, bool, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); starttime is field 22, so f[19].
	if len(f) < 20 {
		return 0, false, errors.New("malformed /proc stat")
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("malformed /proc stat: %w", err)
	}
	return st, f[0] == "Z" || f[0] == "X", nil
}

// alive reports whether the container's init is still the same, non-zombie process.
func (st *containerState) alive() bool {
	if st.Pid <= 0 {
		return false
	}
	start, zombie, err := procStartTime(st.Pid)
	return err == nil && !zombie && start == st.StartTime
}

func (r *Runtime) status(st *containerState) specs.ContainerState {
	if !st.alive() {
		return specs.StateStopped
	}
	if _, err := os.Lstat(r.fifoPath(st.ID)); err == nil {
		return specs.StateCreated
	}
	if st.Cgroup.isFrozen() {
		return StatePaused
	}
	return specs.StateRunning
}

// StatePaused is runc's extra status for a frozen container.
const StatePaused specs.ContainerState = "paused"
