package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/berth-dev/berth/internal/runtime/linux"
	"github.com/berth-dev/berth/internal/shim"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ShimMain is `berth shim`, started by the daemon once per container run; it is not for
// people to run. It reports "ok" or "error MSG" on fd 3 once the container is created, then
// serves until the container exits. main calls it before building the CLI's command tree: a
// shim lives as long as its container, and everything it allocates stays resident.
func ShimMain(args []string) int {
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
	if err := s.Create(ctx); err != nil {
		_ = l.Close()
		return fail(err)
	}
	report("ok")
	// Setup garbage is not needed again: hand it back to the kernel so an idle shim costs little.
	debug.FreeOSMemory()
	if err := s.Serve(ctx, l); err != nil {
		fmt.Fprintln(os.Stderr, "berth shim:", err)
		return 1
	}
	return 0
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
	if err := t.rt.Create(ctx, t.id, t.bundle, opts); err != nil {
		return 0, err
	}
	st, err := t.rt.State(ctx, t.id)
	if err != nil {
		return 0, err
	}
	return st.Pid, nil
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
