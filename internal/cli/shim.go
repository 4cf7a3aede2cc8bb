package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/berth-dev/berth/internal/runtime/linux"
	"github.com/berth-dev/berth/internal/shim"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ShimMain is `berth shim`, started by the daemon for a container its spare shims cannot take
// (see internal/shim); it is not for people to run. It creates the container, then re-executes itself as the shim's C steady state
// (internal/shim/cshim.c), which reports "ok" on fd 3 once it serves and supervises the container
// until it exits. On failure "error MSG" goes to fd 3. main calls it before building the CLI's
// command tree: it is on the path of every container start.
func ShimMain(args []string) int {
	// Setup allocates a few MB at most and the process is replaced right after: no collection.
	debug.SetGCPercent(-1)
	runtime.MemProfileRate = 0
	var cfg shim.Config
	var bundle string
	fs := flag.NewFlagSet("shim", flag.ContinueOnError)
	fs.StringVar(&cfg.ID, "id", "", "container ID")
	fs.StringVar(&cfg.Dir, "dir", "", "shim state directory")
	fs.StringVar(&cfg.LogPath, "log", "", "json-file log path")
	fs.BoolVar(&cfg.Terminal, "tty", false, "allocate a pty")
	fs.BoolVar(&cfg.OpenStdin, "stdin", false, "keep stdin open")
	fs.BoolVar(&cfg.StdinOnce, "stdin-once", false, "close stdin after the first attach ends")
	fs.StringVar(&bundle, "bundle", "", "OCI bundle directory")
	fs.StringVar(&cfg.RuntimeRoot, "runtime-root", "", "runtime state directory")
	ready := os.NewFile(3, "ready")
	fail := func(err error) int {
		if ready != nil {
			_, _ = fmt.Fprintln(ready, "error "+err.Error())
			_ = ready.Close()
		}
		fmt.Fprintln(os.Stderr, "berth shim:", err)
		return 1
	}
	// The shim outlives the daemon and its terminal; only the container's exit ends it.
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	argv := os.Args
	if err := fs.Parse(args); err != nil {
		return fail(err)
	}
	if cfg.ID == "" || cfg.Dir == "" || bundle == "" || cfg.RuntimeRoot == "" {
		return fail(fmt.Errorf("--id, --dir, --bundle and --runtime-root are required"))
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("shim", cfg.ID)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	rt := &linux.Runtime{Root: cfg.RuntimeRoot, Logger: logger}
	task := &linuxTask{rt: rt, id: cfg.ID, bundle: bundle}
	s := shim.New(cfg, task)
	if err := s.Listen(); err != nil {
		return fail(err)
	}
	if err := s.Create(ctx); err != nil {
		s.Close()
		return fail(err)
	}
	err := s.Handover(ctx, ready, argv) // returns only on failure
	_ = task.Kill(ctx, syscall.SIGKILL, true)
	_ = rt.Delete(context.WithoutCancel(ctx), cfg.ID, true)
	s.Close()
	return fail(err)
}

// linuxTask runs a container on berth's own runtime for the shim.
type linuxTask struct {
	rt         *linux.Runtime
	id, bundle string
}

func (t *linuxTask) Create(ctx context.Context, tio shim.TaskIO) (int, error) {
	opts := linux.CreateOpts{ConsoleSocket: tio.ConsoleSocket}
	if !tio.Terminal {
		opts.Stdio = [3]*os.File{tio.Stdin, tio.Stdout, tio.Stderr}
	}
	return t.rt.CreatePid(ctx, t.id, t.bundle, opts)
}

func (t *linuxTask) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	return t.rt.Kill(ctx, t.id, sig, all)
}

func (t *linuxTask) Files(_ context.Context) (string, string, error) {
	f, err := t.rt.ShimFiles(t.id)
	return f.ExecFifo, f.OOMCounter, err
}

// ShimHelperMain is `berth shim-helper`, which the shim's C steady state runs for work that
// needs the runtime (exec, kill of every process, delete). main calls it before building the
// CLI's command tree: an exec waits for it.
func ShimHelperMain(args []string) int {
	return shim.HelperMain(args, func(root string, logTo *os.File) shim.HelperRuntime {
		return helperRuntime{&linux.Runtime{Root: root, Logger: slog.New(slog.NewTextHandler(logTo, nil))}}
	})
}

type helperRuntime struct{ rt *linux.Runtime }

func (h helperRuntime) Exec(ctx context.Context, id string, p specs.Process, tio shim.TaskIO) (int, error) {
	opts := linux.ExecOpts{ConsoleSocket: tio.ConsoleSocket}
	if !tio.Terminal {
		opts.Stdio = [3]*os.File{tio.Stdin, tio.Stdout, tio.Stderr}
	}
	return h.rt.Exec(ctx, id, p, opts)
}

func (h helperRuntime) KillAll(ctx context.Context, id string, sig syscall.Signal) error {
	return h.rt.Kill(ctx, id, sig, true)
}

func (h helperRuntime) DeleteInit(ctx context.Context, id string, pid int) error {
	return h.rt.DeleteInit(ctx, id, pid)
}
