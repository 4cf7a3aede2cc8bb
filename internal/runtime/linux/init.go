package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func init() {
	// Credentials, capabilities, no_new_privs and seccomp are per thread; InitMain does all of
	// it on the main thread and execs from there. Locking in init() pins main to that thread.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		runtime.LockOSThread()
	}
}

// InitMain is the body of "berth init", the process re-executed in the container's namespaces.
// It reads its instructions from the sync socket (fd 3), finishes the setup from inside, waits
// for Start (create) and execs the user's process. It never returns: on failure it reports the
// error on the sync socket (or stderr once the creator is gone) and exits non-zero.
func InitMain() {
	runtime.LockOSThread()
	_ = os.Unsetenv(envNSEnter)
	_ = os.Unsetenv(envNSFork)
	unix.CloseOnExec(fdSync)
	ip := &initProc{sync: os.NewFile(fdSync, "sync")}
	ip.enc = json.NewEncoder(ip.sync)
	ip.dec = json.NewDecoder(ip.sync)
	err := ip.run()
	if err == nil {
		err = errors.New("init returned without exec")
	}
	if ip.readySent {
		fmt.Fprintf(os.Stderr, "berth init: %v\n", err)
	} else {
		_ = ip.enc.Encode(syncMsg{Type: msgError, Error: err.Error()})
	}
	os.Exit(1)
}

type initProc struct {
	sync      *os.File
	enc       *json.Encoder
	dec       *json.Decoder
	readySent bool
	cfg       initConfig
	// execFifo is the exec fifo's write end, held until the exec (create only).
	execFifo *os.File
}

func (ip *initProc) run() error {
	if err := ip.dec.Decode(&ip.cfg); err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	cfg := &ip.cfg
	sp := cfg.Spec
	if sp == nil || sp.Process == nil || sp.Linux == nil || sp.Root == nil {
		return errors.New("incomplete config")
	}
	if cfg.Mode == initModeExec && len(sp.Process.Args) == 0 {
		return errors.New("exec without process args")
	}
	p := sp.Process
	if cfg.Mode == initModeCreate {
		// A new session detaches from the creator's terminal; the container's own console, if
		// any, becomes the controlling terminal below.
		if _, err := unix.Setsid(); err != nil {
			return fmt.Errorf("setsid: %w", err)
		}
		if !cfg.NoNewKeyring {
			// A fresh session keyring, so the container cannot reach the keys of the session
			// that created it. Kernels without keyrings, and user namespaces that may not
			// create one, go without (as with runc).
			if _, err := unix.KeyctlJoinSessionKeyring("_ses." + cfg.ID); err != nil &&
				!errors.Is(err, unix.ENOSYS) && !(isUserNS() && (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM))) {
				return fmt.Errorf("join session keyring: %w", err)
			}
		}
		if cfg.UnshareCgroupNS {
			if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
				return fmt.Errorf("unshare cgroup namespace: %w", err)
			}
		}
		if cfg.NewMountNS {
			if err := ip.setupRootfs(); err != nil {
				return err
			}
		}
		if cfg.NewUTSNS {
			if sp.Hostname != "" {
				if err := unix.Sethostname([]byte(sp.Hostname)); err != nil {
					return fmt.Errorf("sethostname: %w", err)
				}
			}
			if sp.Domainname != "" {
				if err := unix.Setdomainname([]byte(sp.Domainname)); err != nil {
					return fmt.Errorf("setdomainname: %w", err)
				}
			}
		}
		if p.OOMScoreAdj != nil {
			if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(*p.OOMScoreAdj)), 0); err != nil {
				return fmt.Errorf("set oom_score_adj: %w", err)
			}
		}
	} else if p.Terminal {
		if _, err := unix.Setsid(); err != nil {
			return fmt.Errorf("setsid: %w", err)
		}
		if err := setupConsole(fdConsole, p.ConsoleSize, false); err != nil {
			return err
		}
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if err := unix.Chdir(cwd); err != nil {
		return fmt.Errorf("chdir to cwd %q: %w", cwd, err)
	}
	// A container created without a process (allowed by the spec) has nothing to exec; Start
	// refuses it and kills this init.
	var path string
	if len(p.Args) > 0 {
		var err error
		if path, err = lookPath(p.Args[0], p.Env); err != nil {
			return err
		}
	}
	// The filter arrives compiled; decoding it here keeps the work after Start to a minimum.
	var filter *seccompProgram
	if cfg.Seccomp != nil {
		var err error
		if filter, err = cfg.Seccomp.program(); err != nil {
			return err
		}
	}
	if err := closeExtraFDs(); err != nil {
		return err
	}
	if cfg.Mode == initModeCreate {
		if err := ip.enc.Encode(syncMsg{Type: msgReady}); err != nil {
			return fmt.Errorf("report ready: %w", err)
		}
		ip.readySent = true
		_ = ip.sync.Close()
		// Blocks until Start opens the fifo for reading.
		fifo, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(fdFifo), os.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open exec fifo: %w", err)
		}
		if _, err := fifo.Write([]byte("0")); err != nil {
			return fmt.Errorf("write exec fifo: %w", err)
		}
		// The write end stays open (close-on-exec) until the exec: Start reads EOF exactly
		// when the user's process has replaced this one, or when this one died.
		ip.execFifo = fifo
		_ = unix.Close(fdFifo)
		if sp.Hooks != nil && len(sp.Hooks.StartContainer) > 0 {
			st := specs.State{Version: specs.Version, ID: cfg.ID, Status: specs.StateRunning, Pid: os.Getpid(), Bundle: cfg.Bundle, Annotations: sp.Annotations}
			if err := runHooksInContainer(sp.Hooks.StartContainer, st); err != nil {
				return fmt.Errorf("startContainer hook: %w", err)
			}
		}
	}
	if path == "" {
		return errors.New("process is not set")
	}
	if filter == nil && sp.Linux.Seccomp != nil {
		// A config from a runtime that did not compile the filter itself.
		var err error
		if filter, err = compileSeccomp(sp.Linux.Seccomp); err != nil {
			return err
		}
	}
	err := finalizeAndExec(sp, path, filter)
	runtime.KeepAlive(ip.execFifo)
	return err
}

// resetIgnoredSignals sets every ignored signal back to its default. Signals the shim (or a
// caller of `berth oci`) ignored stay ignored across execve, and the Go runtime keeps an
// inherited SIG_IGN (for SIGHUP and SIGINT, and for the signals glibc keeps for itself): the
// container must start with the dispositions of a fresh process, as cinit.c's reset_signals
// gives it. An all-zero kernel sigaction is SIG_DFL on every ABI; the process execs right after.
func resetIgnoredSignals() {
	const sigIgn = 1
	for sig := uintptr(1); sig <= 64; sig++ {
		var old, dfl [4]uintptr
		_, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, sig, 0, uintptr(unsafe.Pointer(&old)), 8, 0, 0)
		if e == 0 && old[0] == sigIgn {
			_, _, _ = unix.RawSyscall6(unix.SYS_RT_SIGACTION, sig, uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0)
		}
	}
}

// finalizeAndExec drops privileges in runc's order (bounding set, then user, then the other
// capability sets, seccomp last when no_new_privs allows it) and execs the process.
func finalizeAndExec(sp *specs.Spec, path string, filter *seccompProgram) error {
	p := sp.Process
	loadFilter := func() error { return filter.load() }
	// Rlimits go on as late as possible: limits such as RLIMIT_AS or RLIMIT_DATA meant for the
	// user's process would otherwise starve this Go process (and libseccomp) first.
	for _, rl := range p.Rlimits {
		lim := syscall.Rlimit{Cur: rl.Soft, Max: rl.Hard}
		if err := syscall.Setrlimit(rlimitTypes[rl.Type], &lim); err != nil {
			return fmt.Errorf("setrlimit %s: %w", rl.Type, err)
		}
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	// Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which is about to go.
	if filter != nil && !p.NoNewPrivileges {
		if err := loadFilter(); err != nil {
			return err
		}
	}
	caps, err := prepareCaps(p.Capabilities)
	if err != nil {
		return err
	}
	if err := caps.Apply(capability.BOUNDS); err != nil {
		return fmt.Errorf("apply capability bounding set: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("keepcaps: %w", err)
	}
	if err := setupUser(p.User); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("keepcaps: %w", err)
	}
	if err := caps.Apply(capability.CAPS | capability.AMBS); err != nil {
		return fmt.Errorf("apply capabilities: %w", err)
	}
	if filter != nil && p.NoNewPrivileges {
		if err := loadFilter(); err != nil {
			return err
		}
	}
	resetIgnoredSignals()
	if err := unix.Exec(path, p.Args, p.Env); err != nil {
		return fmt.Errorf("exec %s: %w", p.Args[0], err)
	}
	return nil
}

func setupUser(u specs.User) error {
	gids := make([]int, 0, len(u.AdditionalGids))
	for _, g := range u.AdditionalGids {
		gids = append(gids, int(g))
	}
	if err := syscall.Setgroups(gids); err != nil && !(errors.Is(err, unix.EPERM) && len(gids) == 0) {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(int(u.GID), int(u.GID), int(u.GID)); err != nil {
		return fmt.Errorf("setgid %d: %w", u.GID, err)
	}
	if err := syscall.Setresuid(int(u.UID), int(u.UID), int(u.UID)); err != nil {
		return fmt.Errorf("setuid %d: %w", u.UID, err)
	}
	if u.Umask != nil {
		unix.Umask(int(*u.Umask))
	}
	return nil
}

// prepareCaps builds the wanted capability sets. Capabilities the runtime itself does not hold
// (it may run inside a container without, say, CAP_SYS_RESOURCE) cannot be granted and are
// left out rather than failing the container, which is what runc does with unknown ones.
func prepareCaps(sc *specs.LinuxCapabilities) (capability.Capabilities, error) {
	cur, err := capability.NewPid2(0)
	if err != nil {
		return nil, fmt.Errorf("capabilities: %w", err)
	}
	if err := cur.Load(); err != nil {
		return nil, fmt.Errorf("capabilities: %w", err)
	}
	want, err := capability.NewPid2(0)
	if err != nil {
		return nil, fmt.Errorf("capabilities: %w", err)
	}
	want.Clear(capability.CAPS | capability.BOUNDS | capability.AMBS)
	if sc == nil {
		return want, nil
	}
	sets := []struct {
		kind  capability.CapType
		names []string
	}{
		{capability.BOUNDING, sc.Bounding}, {capability.EFFECTIVE, sc.Effective},
		{capability.PERMITTED, sc.Permitted}, {capability.INHERITABLE, sc.Inheritable},
		{capability.AMBIENT, sc.Ambient},
	}
	for _, s := range sets {
		known, _ := parseCaps(s.names)
		for _, c := range known {
			if !cur.Get(capability.BOUNDING, c) || !cur.Get(capability.PERMITTED, c) {
				continue
			}
			want.Set(s.kind, c)
		}
	}
	// Ambient capabilities must be permitted and inheritable.
	for _, c := range capability.ListKnown() {
		if want.Get(capability.AMBIENT, c) && !(want.Get(capability.PERMITTED, c) && want.Get(capability.INHERITABLE, c)) {
			want.Unset(capability.AMBIENT, c)
		}
	}
	return want, nil
}

// lookPath resolves the process's executable inside the container with the process's PATH.
func lookPath(file string, env []string) (string, error) {
	check := func(p string) error {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("%s: permission denied", p)
		}
		return nil
	}
	if strings.Contains(file, "/") {
		if err := check(file); err != nil {
			return "", fmt.Errorf("exec: %q: %w", file, err)
		}
		return file, nil
	}
	pathEnv := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if check(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", file)
}

// closeExtraFDs marks every descriptor above stderr close-on-exec, so nothing the runtime or
// its caller held open leaks into the container (the fifo and sync descriptors are closed
// explicitly before that).
func closeExtraFDs() error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list fds: %w", err)
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 {
			continue
		}
		unix.CloseOnExec(fd)
	}
	return nil
}

func runHooksInContainer(hooks []specs.Hook, st specs.State) error {
	in, err := json.Marshal(st)
	if err != nil {
		return err
	}
	for _, h := range hooks {
		cmd := exec.Command(h.Path)
		if len(h.Args) > 0 {
			cmd.Args = h.Args
		}
		cmd.Env = h.Env
		cmd.Stdin = strings.NewReader(string(in))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", h.Path, err)
		}
	}
	return nil
}
