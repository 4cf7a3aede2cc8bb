package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/berth-dev/berth/internal/runtime/linux"
	"github.com/berth-dev/berth/internal/shim"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
)

// newShimCommand is `berth shim`, started by the daemon once per container run. It is not for
// people to run; it reports "ok" or "error MSG" on fd 3 once the container is created.
func newShimCommand() *cobra.Command {
	var (
		cfg         shim.Config
		bundle      string
		runtimeRoot string
	)
	cmd := &cobra.Command{
		Use:    "shim",
		Short:  "Supervise one container (started by the daemon)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ready := os.NewFile(3, "ready")
			report := func(msg string) {
				if ready != nil {
					_, _ = fmt.Fprintln(ready, msg)
					_ = ready.Close()
					ready = nil
				}
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
				report("error " + err.Error())
				return err
			}
			if err := s.Create(ctx); err != nil {
				_ = l.Close()
				report("error " + err.Error())
				return err
			}
			report("ok")
			return s.Serve(ctx, l)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ID, "id", "", "container ID")
	f.StringVar(&cfg.Dir, "dir", "", "shim state directory")
	f.StringVar(&cfg.LogPath, "log", "", "json-file log path")
	f.BoolVar(&cfg.Terminal, "tty", false, "allocate a pty")
	f.BoolVar(&cfg.OpenStdin, "stdin", false, "keep stdin open")
	f.BoolVar(&cfg.StdinOnce, "stdin-once", false, "close stdin after the first attach ends")
	f.StringVar(&bundle, "bundle", "", "OCI bundle directory")
	f.StringVar(&runtimeRoot, "runtime-root", "", "runtime state directory")
	for _, n := range []string{"id", "dir", "bundle", "runtime-root"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
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
