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
	"time"

	"github.com/berth-dev/berth/internal/runtime/linux"
	"github.com/berth-dev/berth/internal/shim"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ShimMain is `berth shim`, started by the daemon once per container run; it is not for
// people to run. It reports "ok" or "error MSG" on fd 3 once the container is created, then
// serves until the container exits. main calls it before building the CLI's command tree: a
// shim lives as long as its container, and everything it allocates stays resident.
func ShimMain(args []string) int {
	// No collection during setup, which allocates a few MB at most and is on the path of every
	// container start; the idle shim then runs with a tight GC (see trimShim). No heap
	// profiling either: its records would stay resident.
	debug.SetGCPercent(-1)
	runtime.MemProfileRate = 0
	var (
		cfg         shim.Config
		bundle      string
		runtimeRoot string
	)
	fs := flag.NewFlagSet("shim", flag.ContinueOnError)
	fs.StringVar(&cfg.ID, "id", "", "container ID")
	fs.StringVar(&cfg.Dir, "dir", "", "shim state directory")
	fs.StringVar(&cfg.LogPath, "log", "", "json-file log path")
	fs.BoolVar(&cfg.Terminal, "tty", false, "allocate a pty")
	fs.BoolVar(&cfg.OpenStdin, "stdin", false, "keep stdin open")
	fs.BoolVar(&cfg.StdinOnce, "stdin-once", false, "close stdin after the first attach ends")
	fs.StringVar(&bundle, "bundle", "", "OCI bundle directory")
	fs.StringVar(&runtimeRoot, "runtime-root", "", "runtime state directory")
	ready := os.NewFile(3, "ready")
	report := func(msg string) {
		if ready != nil {
			_, _ = fmt.Fprintln(ready, msg)
			_ = ready.Close()
			ready = nil
		}
	}
	fail := func(err error) int {
		report("error " + err.Error())
		fmt.Fprintln(os.Stderr, "berth shim:", err)
		return 1
	}
	if err := fs.Parse(args); err != nil {
		return fail(err)
	}
	if cfg.ID == "" || cfg.Dir == "" || bundle == "" || runtimeRoot == "" {
		return fail(fmt.Errorf("--id, --dir, --bundle and --runtime-root are required"))
	}
	// The shim outlives the daemon and its terminal; only the container's exit ends it.
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("shim", cfg.ID)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	rt := &linux.Runtime{Root: runtimeRoot, Logger: cfg.Logger}
	s := shim.New(cfg, &linuxTask{rt: rt, id: cfg.ID, bundle: bundle})
	l, err := s.Listen()
	if err != nil {
		return fail(err)
	}
	// Setup runs on its own goroutine: the stack it grows (JSON, the runtime) goes with it
	// instead of staying with the goroutine that then serves for the container's lifetime.
	created := make(chan error, 1)
	go func() { created <- s.Create(ctx) }()
	if err := <-created; err != nil {
		_ = l.Close()
		return fail(err)
	}
	report("ok")
	// Collect the setup garbage now, before the heap grows further (the GC's own metadata
	// follows the peak heap and stays), and once more when the start is done.
	trimShim()
	trim := time.AfterFunc(shimTrimDelay, trimShim)
	defer trim.Stop()
	if err := s.Serve(ctx, l); err != nil {
		fmt.Fprintln(os.Stderr, "berth shim:", err)
		return 1
	}
	return 0
}

const (
	// shimGCPercent is the shim's GOGC once the container runs: an idle shim has little to do,
	// so a tight GC costs it nothing that matters.
	shimGCPercent = 25
	// shimTrimDelay is how long after creating the container the shim trims its memory.
	shimTrimDelay = 200 * time.Millisecond
)

// trimShim hands setup garbage back to the kernel so that an idle shim costs little. Each
// collection also halves oversized goroutine stacks.
func trimShim() {
	debug.SetGCPercent(shimGCPercent)
	debug.FreeOSMemory()
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

func (t *linuxTask) Start(ctx context.Context) error { return t.rt.Start(ctx, t.id) }

func (t *linuxTask) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	return t.rt.Kill(ctx, t.id, sig, all)
}

func (t *linuxTask) OOMKilled(ctx context.Context) bool {
	oom, _ := t.rt.OOMKilled(ctx, t.id)
	return oom
}

func (t *linuxTask) Delete(ctx context.Context) error { return t.rt.Delete(ctx, t.id, true) }

func (t *linuxTask) Exec(ctx context.Context, p specs.Process, tio shim.TaskIO) (int, error) {
	opts := linux.ExecOpts{ConsoleSocket: tio.ConsoleSocket}
	if !tio.Terminal {
		opts.Stdio = [3]*os.File{tio.Stdin, tio.Stdout, tio.Stderr}
	}
	return t.rt.Exec(ctx, t.id, p, opts)
}
