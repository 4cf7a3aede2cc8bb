// Package ocicmd is `berth oci`, a command line compatible with runc's (create, start, state,
// kill, delete, exec, pause, resume, ps, features, run, list, spec) on top of berth's own runtime
// in internal/runtime/linux, so that outside tools and test suites can drive it like runc.
//
// It must stay a thin translation of flags into linux.Runtime calls: no container logic here.
package ocicmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/berth-dev/berth/internal/runtime/linux"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// DefaultRoot is the state directory when --root is not given.
const DefaultRoot = "/run/berth/oci"

type globals struct {
	root, logPath, logFormat string
	debug, systemdCgroup     bool
	logFile                  *os.File
	logger                   *slog.Logger
}

func (g *globals) runtime() *linux.Runtime {
	return &linux.Runtime{Root: g.root, Logger: g.logger}
}

func (g *globals) setupLog() error {
	level := slog.LevelInfo
	if g.debug {
		level = slog.LevelDebug
	}
	var w io.Writer = os.Stderr
	if g.logPath != "" {
		f, err := os.OpenFile(g.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_SYNC, 0o644)
		if err != nil {
			return fmt.Errorf("open log file: %w", err)
		}
		g.logFile = f
		w = f
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "json":
		g.logger = slog.New(slog.NewJSONHandler(w, opts))
	case "", "text":
		g.logger = slog.New(slog.NewTextHandler(w, opts))
	default:
		return fmt.Errorf("unknown log format %q", g.logFormat)
	}
	return nil
}

// fail records err in the log file (containerd and other runc users read the last error from
// there) and hands it back to cobra, which prints it on stderr.
func (g *globals) fail(err error) error {
	if err != nil && g.logFile != nil && g.logger != nil {
		g.logger.Error(err.Error())
	}
	return err
}

func ctxOf(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// NewCommand returns the `oci` command tree.
func NewCommand() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "oci",
		Short:         "Run containers from OCI bundles with runc's command line",
		SilenceUsage:  true,
		SilenceErrors: false,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return g.setupLog()
		},
		PersistentPostRun: func(*cobra.Command, []string) {
			if g.logFile != nil {
				g.logFile.Close()
			}
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.root, "root", DefaultRoot, "root directory for container state")
	pf.StringVar(&g.logPath, "log", "", "log file (default stderr)")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	pf.BoolVar(&g.debug, "debug", false, "debug logging")
	pf.BoolVar(&g.systemdCgroup, "systemd-cgroup", false, "accepted for runc compatibility; ignored")
	root.AddCommand(createCmd(g, false), createCmd(g, true), startCmd(g), stateCmd(g), killCmd(g),
		deleteCmd(g), execCmd(g), pauseCmd(g, true), pauseCmd(g, false), psCmd(g), featuresCmd(g),
		listCmd(g), specCmd(g))
	return root
}

func createCmd(g *globals, run bool) *cobra.Command {
	var bundle, consoleSocket, pidFile string
	var noPivot, noNewKeyring, detach bool
	var preserveFDs int
	use, short := "create <container-id>", "Create a container from a bundle; it waits for start"
	if run {
		use, short = "run <container-id>", "Create and start a container, wait for it and delete it"
	}
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := ctxOf(cmd)
			rt := g.runtime()
			id := args[0]
			if bundle == "" {
				bundle = "."
			}
			if run && !detach {
				// The init is our child; forward signals to it and report its exit code.
				if err := rt.Create(ctx, id, bundle, linux.CreateOpts{ConsoleSocket: consoleSocket, PidFile: pidFile, NoNewKeyring: noNewKeyring}); err != nil {
					return g.fail(err)
				}
				st, err := rt.State(ctx, id)
				if err != nil {
					return g.fail(err)
				}
				sigs := make(chan os.Signal, 16)
				signal.Notify(sigs)
				defer signal.Stop(sigs)
				go func() {
					for s := range sigs {
						if sig, ok := s.(syscall.Signal); ok && sig != syscall.SIGCHLD && sig != syscall.SIGURG && sig != syscall.SIGPIPE {
							_ = unix.Kill(st.Pid, sig)
						}
					}
				}()
				if err := rt.Start(ctx, id); err != nil {
					_ = rt.Delete(ctx, id, true)
					return g.fail(err)
				}
				code, err := linux.WaitPid(st.Pid)
				if derr := rt.Delete(ctx, id, true); derr != nil {
					g.logger.Warn("delete after run", "err", derr)
				}
				if err != nil {
					return g.fail(err)
				}
				os.Exit(code)
			}
			if err := rt.Create(ctx, id, bundle, linux.CreateOpts{ConsoleSocket: consoleSocket, PidFile: pidFile, NoNewKeyring: noNewKeyring}); err != nil {
				return g.fail(err)
			}
			if run {
				if err := rt.Start(ctx, id); err != nil {
					_ = rt.Delete(ctx, id, true)
					return g.fail(err)
				}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVarP(&bundle, "bundle", "b", "", "path to the bundle directory (default: current directory)")
	f.StringVar(&consoleSocket, "console-socket", "", "unix socket that receives the pty master (SCM_RIGHTS)")
	f.StringVar(&pidFile, "pid-file", "", "file to write the init's PID to")
	f.BoolVar(&noPivot, "no-pivot", false, "accepted for runc compatibility; berth always uses pivot_root")
	f.BoolVar(&noNewKeyring, "no-new-keyring", false, "keep the caller's session keyring")
	f.IntVar(&preserveFDs, "preserve-fds", 0, "accepted for runc compatibility; must be 0")
	if run {
		f.BoolVarP(&detach, "detach", "d", false, "do not wait for the container")
	}
	return c
}

func startCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "start <container-id>", Short: "Start a created container", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.fail(g.runtime().Start(ctxOf(cmd), args[0]))
		},
	}
}

func stateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "state <container-id>", Short: "Print a container's state as JSON", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := g.runtime().Info(ctxOf(cmd), args[0])
			if err != nil {
				return g.fail(err)
			}
			return printJSON(cmd.OutOrStdout(), info)
		},
	}
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

func killCmd(g *globals) *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use: "kill <container-id> [signal]", Short: "Send a signal (default SIGTERM) to a container",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			sig := syscall.SIGTERM
			if len(args) == 2 {
				s, err := linux.ParseSignal(args[1])
				if err != nil {
					return g.fail(err)
				}
				sig = s
			}
			return g.fail(g.runtime().Kill(ctxOf(cmd), args[0], sig, all))
		},
	}
	c.Flags().BoolVarP(&all, "all", "a", false, "send the signal to every process of the container")
	return c
}

func deleteCmd(g *globals) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use: "delete <container-id>", Short: "Delete a container", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.fail(g.runtime().Delete(ctxOf(cmd), args[0], force))
		},
	}
	c.Flags().BoolVarP(&force, "force", "f", false, "kill the container first if it is running")
	return c
}

func pauseCmd(g *globals, pause bool) *cobra.Command {
	use, short := "resume <container-id>", "Resume a paused container"
	if pause {
		use, short = "pause <container-id>", "Freeze every process of a container"
	}
	return &cobra.Command{
		Use: use, Short: short, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt := g.runtime()
			if pause {
				return g.fail(rt.Pause(ctxOf(cmd), args[0]))
			}
			return g.fail(rt.Resume(ctxOf(cmd), args[0]))
		},
	}
}

func psCmd(g *globals) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use: "ps <container-id> [ps options]", Short: "List a container's processes", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pids, err := g.runtime().Ps(ctxOf(cmd), args[0])
			if err != nil {
				return g.fail(err)
			}
			if format == "json" {
				if pids == nil {
					pids = []int{}
				}
				return printJSON(cmd.OutOrStdout(), pids)
			}
			psArgs := args[1:]
			if len(psArgs) == 0 {
				psArgs = []string{"-ef"}
			}
			out, err := exec.CommandContext(ctxOf(cmd), "ps", psArgs...).Output()
			if err != nil {
				return g.fail(fmt.Errorf("ps: %w", err))
			}
			return filterPs(cmd.OutOrStdout(), string(out), pids)
		},
	}
	c.Flags().StringVarP(&format, "format", "f", "table", "table or json")
	return c
}

// filterPs keeps ps's header and the lines whose PID column is one of pids.
func filterPs(w io.Writer, out string, pids []int) error {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 {
		return nil
	}
	col := -1
	for i, h := range strings.Fields(lines[0]) {
		if h == "PID" {
			col = i
		}
	}
	if col < 0 {
		return errors.New("ps output has no PID column")
	}
	want := map[string]bool{}
	for _, p := range pids {
		want[strconv.Itoa(p)] = true
	}
	fmt.Fprintln(w, lines[0])
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) > col && want[f[col]] {
			fmt.Fprintln(w, l)
		}
	}
	return nil
}

func featuresCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "features", Short: "Print the runtime's OCI features as JSON", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printJSON(cmd.OutOrStdout(), linux.Features())
		},
	}
}

func listCmd(g *globals) *cobra.Command {
	var quiet bool
	var format string
	c := &cobra.Command{
		Use: "list", Short: "List containers", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt := g.runtime()
			ids, err := rt.List(ctxOf(cmd))
			if err != nil {
				return g.fail(err)
			}
			w := cmd.OutOrStdout()
			var infos []linux.Info
			for _, id := range ids {
				if info, err := rt.Info(ctxOf(cmd), id); err == nil {
					infos = append(infos, info)
				}
			}
			switch {
			case quiet:
				for _, i := range infos {
					fmt.Fprintln(w, i.ID)
				}
			case format == "json":
				if infos == nil {
					infos = []linux.Info{}
				}
				return printJSON(w, infos)
			default:
				fmt.Fprintf(w, "%-20s %-8s %-10s %-40s %s\n", "ID", "PID", "STATUS", "BUNDLE", "CREATED")
				for _, i := range infos {
					fmt.Fprintf(w, "%-20s %-8d %-10s %-40s %s\n", i.ID, i.Pid, i.Status, i.Bundle, i.Created.Format("2006-01-02T15:04:05Z"))
				}
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "print ids only")
	c.Flags().StringVarP(&format, "format", "f", "table", "table or json")
	return c
}

func specCmd(g *globals) *cobra.Command {
	var bundle string
	var rootless bool
	c := &cobra.Command{
		Use: "spec", Short: "Write a Docker-like config.json into the bundle directory", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sp := linux.DefaultSpec("rootfs", []string{"sh"})
			sp.Process.Terminal = true
			b, err := json.MarshalIndent(sp, "", "\t")
			if err != nil {
				return err
			}
			p := filepath.Join(bundle, "config.json")
			if _, err := os.Stat(p); err == nil {
				return g.fail(fmt.Errorf("file %s exists; remove it first", p))
			}
			return g.fail(os.WriteFile(p, b, 0o644))
		},
	}
	c.Flags().StringVarP(&bundle, "bundle", "b", ".", "bundle directory")
	c.Flags().BoolVar(&rootless, "rootless", false, "accepted for runc compatibility; ignored")
	return c
}

func execCmd(g *globals) *cobra.Command {
	var processFile, pidFile, consoleSocket, cwd, userSpec string
	var env []string
	var tty, detach, noNewPrivs bool
	c := &cobra.Command{
		Use:   "exec <container-id> [command [args...]]",
		Short: "Run a new process inside a running container",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := ctxOf(cmd)
			rt := g.runtime()
			id := args[0]
			var p specs.Process
			if processFile != "" {
				b, err := os.ReadFile(processFile)
				if err != nil {
					return g.fail(fmt.Errorf("read process file: %w", err))
				}
				if err := json.Unmarshal(b, &p); err != nil {
					return g.fail(fmt.Errorf("parse process file: %w", err))
				}
			} else {
				if len(args) < 2 {
					return g.fail(errors.New("exec: no command given (pass arguments or --process)"))
				}
				p = specs.Process{Args: args[1:], Cwd: "/", Terminal: tty}
				// Inherit the container's environment and identity, like runc.
				if sp, err := linux.LoadBundleSpecOf(rt, id); err == nil && sp.Process != nil {
					p.Env = sp.Process.Env
					p.User = sp.Process.User
					p.Capabilities = sp.Process.Capabilities
					p.NoNewPrivileges = sp.Process.NoNewPrivileges
					p.Cwd = sp.Process.Cwd
				}
				if cwd != "" {
					p.Cwd = cwd
				}
				p.Env = append(p.Env, env...)
				if noNewPrivs {
					p.NoNewPrivileges = true
				}
				if userSpec != "" {
					u, err := parseUser(userSpec)
					if err != nil {
						return g.fail(err)
					}
					p.User = u
				}
			}
			if !detach {
				// The process is a grandchild; adopt it to learn its exit status.
				if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
					return g.fail(fmt.Errorf("set child subreaper: %w", err))
				}
			}
			pid, err := rt.Exec(ctx, id, p, linux.ExecOpts{ConsoleSocket: consoleSocket, PidFile: pidFile})
			if err != nil {
				return g.fail(err)
			}
			if detach {
				return nil
			}
			sigs := make(chan os.Signal, 16)
			signal.Notify(sigs)
			defer signal.Stop(sigs)
			go func() {
				for s := range sigs {
					if sig, ok := s.(syscall.Signal); ok && sig != syscall.SIGCHLD && sig != syscall.SIGURG && sig != syscall.SIGPIPE {
						_ = unix.Kill(pid, sig)
					}
				}
			}()
			code, err := linux.WaitPid(pid)
			if err != nil {
				return g.fail(err)
			}
			os.Exit(code)
			return nil
		},
	}
	f := c.Flags()
	f.SetInterspersed(false)
	f.StringVarP(&processFile, "process", "p", "", "path to a process.json")
	f.BoolVarP(&tty, "tty", "t", false, "allocate a pseudo-TTY (needs --console-socket)")
	f.BoolVarP(&detach, "detach", "d", false, "do not wait for the process")
	f.StringVar(&pidFile, "pid-file", "", "file to write the process's PID to")
	f.StringVar(&consoleSocket, "console-socket", "", "unix socket that receives the pty master")
	f.StringVar(&cwd, "cwd", "", "working directory in the container")
	f.StringArrayVarP(&env, "env", "e", nil, "extra environment variables")
	f.StringVarP(&userSpec, "user", "u", "", "uid[:gid]")
	f.BoolVar(&noNewPrivs, "no-new-privs", false, "set no_new_privs")
	return c
}

func parseUser(s string) (specs.User, error) {
	uidS, gidS, _ := strings.Cut(s, ":")
	uid, err := strconv.ParseUint(uidS, 10, 32)
	if err != nil {
		return specs.User{}, fmt.Errorf("--user %q: need numeric uid[:gid]", s)
	}
	u := specs.User{UID: uint32(uid)}
	if gidS != "" {
		gid, err := strconv.ParseUint(gidS, 10, 32)
		if err != nil {
			return specs.User{}, fmt.Errorf("--user %q: need numeric uid[:gid]", s)
		}
		u.GID = uint32(gid)
	}
	return u, nil
}
