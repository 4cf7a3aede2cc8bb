package linux

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ErrNotPrepared is Prepare's answer for a container the C init cannot set up (a user
// namespace, hooks, a joined PID or mount namespace...): create it with CreatePid instead.
var ErrNotPrepared = errors.New("container needs the Go init")

// Prepared is a container made up to the start of its init, for a supervisor that starts the
// init itself: the shim's C side (internal/shim/cshim.c), which has no Go runtime to run
// CreatePid with. Prepare and Finish do everything that needs Go (the spec, the seccomp filter,
// the C init's program, the cgroup); the supervisor
//   - starts the C init in new namespaces (CloneFlags) with InitEnv, with stdin, stdout and
//     stderr, a sync socket at fd 3, Fifo opened O_PATH at fd 4 and, with a terminal, a socket
//     at fd 5 on which the init sends the pty master: an exec of "/proc/self/exe init", or a
//     fork that runs cinit.c's berth_cinit_direct;
//   - writes Program on the sync socket: the init sets the container up while Finish runs;
//   - writes the state file, StatePrefix + `"pid":PID,"startTime":T` + StateSuffix, where T
//     is field 22 of /proc/PID/stat, to a temporary file renamed to StateFile;
//   - once Finish has returned, writes the init's PID to each file of Procs, then one byte on
//     the sync socket;
//   - reads the init's answer, one JSON line: {"type":"ready"} or {"type":"error","error":...}.
//
// From then on the container is the runtime's like any other: Start, Kill, Delete and Exec
// work on it. A supervisor that fails before the state file exists kills its init and reports;
// the owner of the Prepared then calls Abort.
type Prepared struct {
	ID         string
	CloneFlags uintptr
	InitEnv    []string
	Program    []byte
	Procs      []string
	// Fifo is the exec fifo, which the init waits on until Start; OOMCounter the cgroup file
	// whose "oom_kill" count tells an OOM kill ("" when there is none). The shim needs both.
	Fifo, OOMCounter string
	StateFile        string
	StatePrefix      []byte
	StateSuffix      []byte

	r *Runtime
	c *creation
	// cgroup is true once Finish made the cgroup, which Abort then removes.
	cgroup bool
}

// statePlaceholder stands for the init's PID and start time in the encoded state: Prepare
// splits the JSON around it. Field values are strings or numbers escaped by encoding/json, so
// the bare sequence cannot occur inside one of them.
const statePlaceholder = `"pid":-1,"startTime":0`

// Prepare makes container id from the bundle up to the start of its init (see Prepared); sp,
// when not nil, is the bundle's config (Prepare may change it), which saves reading it back. A
// container with a terminal gets its pty from the init on fd 5. On ErrNotPrepared, or any
// other error, nothing is left behind.
func (r *Runtime) Prepare(_ context.Context, id, bundle string, sp *specs.Spec, terminal bool) (_ *Prepared, retErr error) {
	c, err := r.begin(id, bundle, sp, terminal, false)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			_ = os.RemoveAll(c.dir)
		}
	}()
	if !c.cinit || c.sp.Hooks != nil {
		return nil, ErrNotPrepared
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", envCInit + "=1"}
	if len(c.plan.join) > 0 {
		env = append(env, envNSEnter+"="+strings.Join(c.plan.join, "\n"))
	}
	st := c.state()
	st.Pid = -1
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	pre, suf, ok := bytes.Cut(b, []byte(statePlaceholder))
	if !ok {
		return nil, fmt.Errorf("encode state: no placeholder in %s", b)
	}
	cs := c.cplan.state
	p := &Prepared{ID: id, CloneFlags: c.plan.cloneFlags, InitEnv: env, Program: c.prog,
		Fifo: r.fifoPath(id), StateFile: filepath.Join(c.dir, "state.json"),
		StatePrefix: pre, StateSuffix: suf, r: r, c: c}
	if cs.V2 != "" {
		p.Procs = []string{filepath.Join(cs.v2Dir(), "cgroup.procs")}
		p.OOMCounter = filepath.Join(cs.v2Dir(), "memory.events")
	} else {
		seen := map[string]bool{}
		for ctl := range cs.V1 {
			// Co-mounted controllers (cpu,cpuacct) share a directory: one write suffices.
			d := cs.v1Dir(ctl)
			if d == "" || seen[d] {
				continue
			}
			seen[d] = true
			p.Procs = append(p.Procs, filepath.Join(d, "cgroup.procs"))
		}
		if d := cs.v1Dir("memory"); d != "" {
			p.OOMCounter = filepath.Join(d, "memory.oom_control")
		}
	}
	if len(p.Procs) == 0 {
		return nil, fmt.Errorf("cgroup: no controller to join: %w", errdefs.ErrUnavailable)
	}
	return p, nil
}

// Finish saves the container's config and makes its cgroup, while the supervisor starts the
// init. On failure the caller calls Abort.
func (p *Prepared) Finish() error {
	// The config first: a forced Delete after the caller died (no state file) finds the cgroup
	// through it, so no cgroup may exist without it.
	if err := p.c.saveConfig(); err != nil {
		return err
	}
	if err := p.c.makeCgroup(); err != nil {
		return err
	}
	p.cgroup = true
	return nil
}

// Abort undoes a Prepare whose supervisor failed: it kills what runs in the container's cgroup,
// removes the cgroup and the state directory. It is not for a container whose state file the
// supervisor wrote: Delete that one.
func (p *Prepared) Abort() {
	if p.cgroup {
		p.r.dropCgroup(p.ID, p.c.cplan.state)
	}
	_ = os.RemoveAll(p.c.dir)
}
