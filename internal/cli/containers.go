package cli

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	units "github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/moby/term"
	"github.com/spf13/cobra"
)

// Exit codes of `docker run` for failures that are not the container's own.
const (
	exitRunDaemon  = 125 // the daemon could not create or start the container
	exitCannotExec = 126
	exitNotFound   = 127
)

func (c *cli) newContainerCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "container", Short: "Manage containers", Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() }}
	cmd.AddCommand(
		c.newRunCommand(), c.newCreateCommand(), c.newStartCommand(), c.newStopCommand(),
		c.newRestartCommand(), c.newKillCommand(), c.newRmCommand("rm"), c.newPsCommand("ls"),
		c.newLogsCommand(), c.newWaitCommand(), c.newTopCommand(), c.newStatsCommand(),
		c.newAttachCommand(), c.newExecCommand(), c.newPauseCommand(true), c.newPauseCommand(false),
		c.newRenameCommand(), c.newUpdateCommand(), c.newCpCommand(), c.newDiffCommand(),
		c.newExportCommand(), c.newContainerPruneCommand(), c.newContainerInspectCommand(),
		c.newCommitCommand(),
	)
	return cmd
}

func (c *cli) newCreateCommand() *cobra.Command {
	var (
		o  containerOpts
		rm bool
	)
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a new container",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _, err := c.createContainer(cmd.Context(), &o, cmd, args, rm)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.out, id)
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false)
	o.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&rm, "rm", false, "Automatically remove the container and its associated anonymous volumes when it exits")
	return cmd
}

func (c *cli) newRunCommand() *cobra.Command {
	var (
		o          containerOpts
		detach     bool
		rm         bool
		sigProxy   bool
		detachKeys string
	)
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create and run a new container from an image",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if o.tty && o.interactive {
				if _, ok := isTerminal(c.in); !ok {
					return statusError{status: exitUsage, msg: "the input device is not a TTY"}
				}
			}
			if detach {
				if len(o.attach) > 0 {
					return statusError{status: exitUsage, msg: "conflicting options: cannot specify both --attach and --detach"}
				}
				o.detached = true
			}
			id, cfg, err := c.createContainer(ctx, &o, cmd, args, rm)
			if err != nil {
				return err
			}
			cl, _ := c.client()
			if detach {
				if _, err := cl.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
					return statusError{status: exitRunDaemon, msg: c.userError(err)}
				}
				fmt.Fprintln(c.out, id)
				return nil
			}
			cond := container.WaitConditionNextExit
			if rm {
				cond = container.WaitConditionRemoved
			}
			waitCtx, cancelWait := context.WithCancel(ctx)
			defer cancelWait()
			wr := cl.ContainerWait(waitCtx, id, client.ContainerWaitOptions{Condition: cond})
			var resp client.HijackedResponse
			attached := cfg.AttachStdin || cfg.AttachStdout || cfg.AttachStderr
			if attached {
				ar, err := cl.ContainerAttach(ctx, id, client.ContainerAttachOptions{
					Stream: true, Stdin: cfg.AttachStdin, Stdout: cfg.AttachStdout, Stderr: cfg.AttachStderr, DetachKeys: detachKeys,
				})
				if err != nil {
					return statusError{status: exitRunDaemon, msg: c.userError(err)}
				}
				resp = ar.HijackedResponse
				defer resp.Close()
			}
			if sigProxy && !cfg.Tty {
				defer proxySignals(ctx, cl, id)()
			}
			if _, err := cl.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
				return startError(c.userError(err))
			}
			if attached {
				resize := func(h, w uint) error {
					_, err := cl.ContainerResize(ctx, id, client.ContainerResizeOptions{Height: h, Width: w})
					return err
				}
				if err := c.streamIO(ctx, resp, cfg.Tty, cfg.AttachStdin, resize); err != nil && !errors.Is(err, io.EOF) {
					return err
				}
			}
			select {
			case r := <-wr.Result:
				if r.Error != nil && r.Error.Message != "" {
					return statusError{status: exitRunDaemon, msg: r.Error.Message}
				}
				if r.StatusCode != 0 {
					return statusError{status: int(r.StatusCode)}
				}
				return nil
			case err := <-wr.Error:
				return statusError{status: exitRunDaemon, msg: c.userError(err)}
			}
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	o.addFlags(f)
	f.BoolVarP(&detach, "detach", "d", false, "Run container in background and print container ID")
	f.BoolVar(&rm, "rm", false, "Automatically remove the container and its associated anonymous volumes when it exits")
	f.StringVar(&detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	f.BoolVar(&sigProxy, "sig-proxy", true, "Proxy received signals to the process")
	f.String("pull", "missing", `Pull image before running ("always", "missing", "never")`)
	return cmd
}

// createContainer sends the create request (AutoRemove for --rm); a missing image is reported
// as docker does.
func (c *cli) createContainer(ctx context.Context, o *containerOpts, cmd *cobra.Command, args []string, rm bool) (string, *container.Config, error) {
	cfg, hc, nc, err := o.toConfig(args[0], args[1:], cmd.Flags())
	if err != nil {
		return "", nil, statusError{status: exitUsage, msg: err.Error()}
	}
	hc.AutoRemove = rm
	cl, err := c.client()
	if err != nil {
		return "", nil, err
	}
	res, err := cl.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: hc, NetworkingConfig: nc, Name: o.name})
	if err != nil {
		if client.IsErrConnectionFailed(err) {
			return "", nil, err
		}
		if errdefs.IsNotFound(err) && strings.Contains(err.Error(), "No such image") {
			return "", nil, statusError{status: exitRunDaemon, msg: fmt.Sprintf("Unable to find image '%s' locally\n%s", args[0], c.userError(err))}
		}
		return "", nil, statusError{status: exitRunDaemon, msg: c.userError(err)}
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(c.err, "WARNING:", w)
	}
	return res.ID, cfg, nil
}

// startError maps a start failure to docker's exit codes: 127 for a command that does not
// exist, 126 for one that cannot be run, 125 otherwise.
func startError(msg string) error {
	low := strings.ToLower(msg)
	switch {
	case strings.Contains(low, "executable file not found") || strings.Contains(low, "no such file or directory"):
		return statusError{status: exitNotFound, msg: msg}
	case strings.Contains(low, "permission denied"):
		return statusError{status: exitCannotExec, msg: msg}
	}
	return statusError{status: exitRunDaemon, msg: msg}
}

// forEach runs fn on every argument, printing each success as docker does and failing at the
// end if any failed.
func (c *cli) forEach(args []string, fn func(string) error) error {
	var errs []string
	for _, a := range args {
		if err := fn(a); err != nil {
			if client.IsErrConnectionFailed(err) {
				return err
			}
			errs = append(errs, c.userError(err))
			continue
		}
		fmt.Fprintln(c.out, a)
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

func (c *cli) newStartCommand() *cobra.Command {
	var attach, interactive bool
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "start [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Start one or more stopped containers",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if !attach && !interactive {
				return c.forEach(args, func(id string) error {
					_, err := cl.ContainerStart(ctx, id, client.ContainerStartOptions{})
					return err
				})
			}
			if len(args) > 1 {
				return statusError{status: exitUsage, msg: "you cannot start and attach multiple containers at once"}
			}
			ins, err := cl.ContainerInspect(ctx, args[0], client.ContainerInspectOptions{})
			if err != nil {
				return err
			}
			cfg := ins.Container.Config
			stdin := interactive && cfg.OpenStdin
			wr := cl.ContainerWait(ctx, args[0], client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
			ar, err := cl.ContainerAttach(ctx, args[0], client.ContainerAttachOptions{Stream: true, Stdin: stdin, Stdout: true, Stderr: true, DetachKeys: detachKeys})
			if err != nil {
				return err
			}
			defer ar.Close()
			if attach && !cfg.Tty {
				defer proxySignals(ctx, cl, args[0])()
			}
			if _, err := cl.ContainerStart(ctx, args[0], client.ContainerStartOptions{}); err != nil {
				return err
			}
			resize := func(h, w uint) error {
				_, err := cl.ContainerResize(ctx, args[0], client.ContainerResizeOptions{Height: h, Width: w})
				return err
			}
			_ = c.streamIO(ctx, ar.HijackedResponse, cfg.Tty, stdin, resize)
			select {
			case r := <-wr.Result:
				if r.StatusCode != 0 {
					return statusError{status: int(r.StatusCode)}
				}
			case err := <-wr.Error:
				return err
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&attach, "attach", "a", false, "Attach STDOUT/STDERR and forward signals")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "Attach container's STDIN")
	cmd.Flags().StringVar(&detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	return cmd
}

func (c *cli) newStopCommand() *cobra.Command {
	var signal string
	var timeout int
	cmd := &cobra.Command{
		Use:   "stop [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Stop one or more running containers",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			t := stopTimeoutFlag(cmd.Flags(), timeout)
			return c.forEach(args, func(id string) error {
				_, err := cl.ContainerStop(cmd.Context(), id, client.ContainerStopOptions{Signal: signal, Timeout: t})
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&signal, "signal", "s", "", "Signal to send to the container")
	cmd.Flags().IntVarP(&timeout, "time", "t", 0, "Seconds to wait before killing the container")
	cmd.Flags().IntVar(&timeout, "timeout", 0, "Seconds to wait before killing the container")
	_ = cmd.Flags().MarkHidden("timeout")
	return cmd
}

func (c *cli) newRestartCommand() *cobra.Command {
	var signal string
	var timeout int
	cmd := &cobra.Command{
		Use:   "restart [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Restart one or more containers",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			t := stopTimeoutFlag(cmd.Flags(), timeout)
			return c.forEach(args, func(id string) error {
				_, err := cl.ContainerRestart(cmd.Context(), id, client.ContainerRestartOptions{Signal: signal, Timeout: t})
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&signal, "signal", "s", "", "Signal to send to the container")
	cmd.Flags().IntVarP(&timeout, "time", "t", 0, "Seconds to wait before killing the container")
	return cmd
}

func (c *cli) newKillCommand() *cobra.Command {
	var signal string
	cmd := &cobra.Command{
		Use:   "kill [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Kill one or more running containers",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return c.forEach(args, func(id string) error {
				_, err := cl.ContainerKill(cmd.Context(), id, client.ContainerKillOptions{Signal: signal})
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&signal, "signal", "s", "", "Signal to send to the container")
	return cmd
}

func (c *cli) newRmCommand(use string) *cobra.Command {
	var force, volumes, link bool
	cmd := &cobra.Command{
		Use:     use + " [OPTIONS] CONTAINER [CONTAINER...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more containers",
		Args:    requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return c.forEach(args, func(id string) error {
				_, err := cl.ContainerRemove(cmd.Context(), id, client.ContainerRemoveOptions{Force: force, RemoveVolumes: volumes, RemoveLinks: link})
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force the removal of a running container (uses SIGKILL)")
	cmd.Flags().BoolVarP(&volumes, "volumes", "v", false, "Remove anonymous volumes associated with the container")
	cmd.Flags().BoolVarP(&link, "link", "l", false, "Remove the specified link")
	return cmd
}

func (c *cli) newPauseCommand(pause bool) *cobra.Command {
	use, short := "pause", "Pause all processes within one or more containers"
	if !pause {
		use, short = "unpause", "Unpause all processes within one or more containers"
	}
	return &cobra.Command{
		Use:   use + " CONTAINER [CONTAINER...]",
		Short: short,
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return c.forEach(args, func(id string) error {
				var err error
				if pause {
					_, err = cl.ContainerPause(cmd.Context(), id, client.ContainerPauseOptions{})
				} else {
					_, err = cl.ContainerUnpause(cmd.Context(), id, client.ContainerUnpauseOptions{})
				}
				return err
			})
		},
	}
}

func (c *cli) newRenameCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "rename CONTAINER NEW_NAME",
		Short: "Rename a container",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			_, err = cl.ContainerRename(cmd.Context(), args[0], client.ContainerRenameOptions{NewName: args[1]})
			return err
		},
	}
}

func (c *cli) newWaitCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "wait CONTAINER [CONTAINER...]",
		Short: "Block until one or more containers stop, then print their exit codes",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			var errs []string
			for _, id := range args {
				wr := cl.ContainerWait(cmd.Context(), id, client.ContainerWaitOptions{})
				select {
				case r := <-wr.Result:
					fmt.Fprintln(c.out, r.StatusCode)
				case err := <-wr.Error:
					errs = append(errs, c.userError(err))
				}
			}
			if len(errs) > 0 {
				return errors.New(strings.Join(errs, "\n"))
			}
			return nil
		},
	}
}

func (c *cli) newLogsCommand() *cobra.Command {
	var (
		follow, timestamps, details bool
		since, until, tail          string
	)
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] CONTAINER",
		Short: "Fetch the logs of a container",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			ctx, cancel := interruptible(cmd.Context())
			defer cancel()
			ins, err := cl.ContainerInspect(ctx, args[0], client.ContainerInspectOptions{})
			if err != nil {
				return err
			}
			s, err := parseTimeFilter(since)
			if err != nil {
				return statusError{status: exitUsage, msg: "invalid --since: " + err.Error()}
			}
			u, err := parseTimeFilter(until)
			if err != nil {
				return statusError{status: exitUsage, msg: "invalid --until: " + err.Error()}
			}
			rc, err := cl.ContainerLogs(ctx, args[0], client.ContainerLogsOptions{
				ShowStdout: true, ShowStderr: true, Follow: follow, Timestamps: timestamps,
				Since: s, Until: u, Tail: tail, Details: details,
			})
			if err != nil {
				return err
			}
			defer rc.Close()
			if ins.Container.Config.Tty {
				_, err = io.Copy(c.out, rc)
			} else {
				_, err = stdcopyTo(c.out, c.err, rc)
			}
			if ctx.Err() != nil {
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "Follow log output")
	f.BoolVarP(&timestamps, "timestamps", "t", false, "Show timestamps")
	f.BoolVar(&details, "details", false, "Show extra details provided to logs")
	f.StringVar(&since, "since", "", "Show logs since timestamp or relative (e.g. 42m for 42 minutes)")
	f.StringVar(&until, "until", "", "Show logs before a timestamp or relative (e.g. 42m for 42 minutes)")
	f.StringVarP(&tail, "tail", "n", "all", "Number of lines to show from the end of the logs")
	return cmd
}

func (c *cli) newAttachCommand() *cobra.Command {
	var noStdin, sigProxy bool
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "attach [OPTIONS] CONTAINER",
		Short: "Attach local standard input, output, and error streams to a running container",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			ins, err := cl.ContainerInspect(ctx, args[0], client.ContainerInspectOptions{})
			if err != nil {
				return err
			}
			if !ins.Container.State.Running {
				// docker's exact wording, which scripts match on.
				return statusError{status: exitError, msg: "You cannot attach to a stopped container, start it first"}
			}
			cfg := ins.Container.Config
			stdin := !noStdin && cfg.OpenStdin
			ar, err := cl.ContainerAttach(ctx, args[0], client.ContainerAttachOptions{Stream: true, Stdin: stdin, Stdout: true, Stderr: true, DetachKeys: detachKeys})
			if err != nil {
				return err
			}
			defer ar.Close()
			if sigProxy && !cfg.Tty {
				defer proxySignals(ctx, cl, args[0])()
			}
			resize := func(h, w uint) error {
				_, err := cl.ContainerResize(ctx, args[0], client.ContainerResizeOptions{Height: h, Width: w})
				return err
			}
			if err := c.streamIO(ctx, ar.HijackedResponse, cfg.Tty, stdin, resize); err != nil {
				return err
			}
			if r, err := cl.ContainerInspect(ctx, args[0], client.ContainerInspectOptions{}); err == nil && !r.Container.State.Running && r.Container.State.ExitCode != 0 {
				return statusError{status: r.Container.State.ExitCode}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noStdin, "no-stdin", false, "Do not attach STDIN")
	cmd.Flags().StringVar(&detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	cmd.Flags().BoolVar(&sigProxy, "sig-proxy", true, "Proxy all received signals to the process")
	return cmd
}

func (c *cli) newExecCommand() *cobra.Command {
	var (
		detach, interactive, tty, privileged bool
		user, workdir, detachKeys            string
		env, envFile                         []string
	)
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Execute a command in a running container",
		Args:  requiresMinArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			e := expandEnv(env)
			for _, p := range envFile {
				kv, err := readKVFile(p, true)
				if err != nil {
					return err
				}
				e = append(kv, e...)
			}
			if tty && interactive {
				if _, ok := isTerminal(c.in); !ok {
					return statusError{status: exitUsage, msg: "the input device is not a TTY"}
				}
			}
			opts := client.ExecCreateOptions{
				User: user, Privileged: privileged, TTY: tty, AttachStdin: interactive && !detach,
				AttachStdout: !detach, AttachStderr: !detach, DetachKeys: detachKeys,
				Env: e, WorkingDir: workdir, Cmd: args[1:],
			}
			if tty {
				if fd, ok := isTerminal(c.out); ok {
					if ws, err := term.GetWinsize(fd); err == nil {
						opts.ConsoleSize = client.ConsoleSize{Height: uint(ws.Height), Width: uint(ws.Width)}
					}
				}
			}
			res, err := cl.ExecCreate(ctx, args[0], opts)
			if err != nil {
				return err
			}
			if detach {
				_, err := cl.ExecStart(ctx, res.ID, client.ExecStartOptions{Detach: true, TTY: tty})
				return err
			}
			ar, err := cl.ExecAttach(ctx, res.ID, client.ExecAttachOptions{TTY: tty, ConsoleSize: opts.ConsoleSize})
			if err != nil {
				return err
			}
			defer ar.Close()
			resize := func(h, w uint) error {
				_, err := cl.ExecResize(ctx, res.ID, client.ExecResizeOptions{Height: h, Width: w})
				return err
			}
			if err := c.streamIO(ctx, ar.HijackedResponse, tty, interactive, resize); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			ins, err := cl.ExecInspect(ctx, res.ID, client.ExecInspectOptions{})
			if err != nil {
				return err
			}
			if ins.ExitCode != 0 {
				return statusError{status: ins.ExitCode}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.BoolVarP(&detach, "detach", "d", false, "Detached mode: run command in the background")
	f.BoolVarP(&interactive, "interactive", "i", false, "Keep STDIN open even if not attached")
	f.BoolVarP(&tty, "tty", "t", false, "Allocate a pseudo-TTY")
	f.BoolVar(&privileged, "privileged", false, "Give extended privileges to the command")
	f.StringVarP(&user, "user", "u", "", "Username or UID (format: \"<name|uid>[:<group|gid>]\")")
	f.StringVarP(&workdir, "workdir", "w", "", "Working directory inside the container")
	f.StringVar(&detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	listVarP(f, &env, "env", "e", nil, "Set environment variables")
	listVarP(f, &envFile, "env-file", "", nil, "Read in a file of environment variables")
	return cmd
}

func (c *cli) newTopCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "top CONTAINER [ps OPTIONS]",
		Short: "Display the running processes of a container",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.ContainerTop(cmd.Context(), args[0], client.ContainerTopOptions{Arguments: args[1:]})
			if err != nil {
				return err
			}
			tw := newTabWriter(c.out)
			fmt.Fprintln(tw, strings.Join(res.Titles, "\t"))
			for _, p := range res.Processes {
				fmt.Fprintln(tw, strings.Join(p, "\t"))
			}
			return tw.Flush()
		},
	}
}

func (c *cli) newDiffCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "diff CONTAINER",
		Short: "Inspect changes to files or directories on a container's filesystem",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.ContainerDiff(cmd.Context(), args[0], client.ContainerDiffOptions{})
			if err != nil {
				return err
			}
			for _, ch := range res.Changes {
				fmt.Fprintf(c.out, "%s %s\n", ch.Kind, ch.Path)
			}
			return nil
		},
	}
}

func (c *cli) newExportCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "export [OPTIONS] CONTAINER",
		Short: "Export a container's filesystem as a tar archive",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output == "" {
				if _, ok := isTerminal(c.out); ok {
					return errors.New("cowardly refusing to save to a terminal. Use the -o flag or redirect")
				}
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			rc, err := cl.ContainerExport(cmd.Context(), args[0], client.ContainerExportOptions{})
			if err != nil {
				return err
			}
			defer rc.Close()
			if output == "" {
				_, err = io.Copy(c.out, rc)
				return err
			}
			return writeFileAtomic(output, rc)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Write to a file, instead of STDOUT")
	return cmd
}

func (c *cli) newUpdateCommand() *cobra.Command {
	var (
		memory, memorySwap, memoryReservation string
		cpus                                  float64
		cpuShares, pidsLimit                  int64
		cpusetCpus, cpusetMems, restart       string
		blkioWeight                           uint16
	)
	cmd := &cobra.Command{
		Use:   "update [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Update configuration of one or more containers",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mem, err := parseSize("memory", memory)
			if err != nil {
				return statusError{status: exitUsage, msg: err.Error()}
			}
			swap, err := parseSize("memory-swap", memorySwap)
			if err != nil {
				return statusError{status: exitUsage, msg: err.Error()}
			}
			resv, err := parseSize("memory-reservation", memoryReservation)
			if err != nil {
				return statusError{status: exitUsage, msg: err.Error()}
			}
			r := &container.Resources{Memory: mem, MemorySwap: swap, MemoryReservation: resv,
				NanoCPUs: int64(cpus * 1e9), CPUShares: cpuShares, CpusetCpus: cpusetCpus, CpusetMems: cpusetMems, BlkioWeight: blkioWeight}
			if cmd.Flags().Changed("pids-limit") {
				r.PidsLimit = &pidsLimit
			}
			opts := client.ContainerUpdateOptions{Resources: r}
			if restart != "" {
				p, err := parseRestart(restart)
				if err != nil {
					return statusError{status: exitUsage, msg: err.Error()}
				}
				opts.RestartPolicy = &p
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			return c.forEach(args, func(id string) error {
				_, err := cl.ContainerUpdate(cmd.Context(), id, opts)
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&memory, "memory", "m", "", "Memory limit")
	f.StringVar(&memorySwap, "memory-swap", "", "Swap limit equal to memory plus swap: -1 to enable unlimited swap")
	f.StringVar(&memoryReservation, "memory-reservation", "", "Memory soft limit")
	f.Float64Var(&cpus, "cpus", 0, "Number of CPUs")
	f.Int64VarP(&cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight)")
	f.StringVar(&cpusetCpus, "cpuset-cpus", "", "CPUs in which to allow execution (0-3, 0,1)")
	f.StringVar(&cpusetMems, "cpuset-mems", "", "MEMs in which to allow execution (0-3, 0,1)")
	f.Int64Var(&pidsLimit, "pids-limit", 0, "Tune container pids limit (set -1 for unlimited)")
	f.Uint16Var(&blkioWeight, "blkio-weight", 0, "Block IO (relative weight), between 10 and 1000, or 0 to disable")
	f.StringVar(&restart, "restart", "", "Restart policy to apply when a container exits")
	return cmd
}

func (c *cli) newContainerPruneCommand() *cobra.Command {
	var force bool
	var filters []string
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all stopped containers",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !force && !c.confirm("WARNING! This will remove all stopped containers.") {
				return nil
			}
			f, err := parseFilterFlags(filters)
			if err != nil {
				return err
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.ContainerPrune(cmd.Context(), client.ContainerPruneOptions{Filters: client.Filters(f)})
			if err != nil {
				return err
			}
			if len(res.Report.ContainersDeleted) > 0 {
				fmt.Fprintln(c.out, "Deleted Containers:")
				for _, id := range res.Report.ContainersDeleted {
					fmt.Fprintln(c.out, id)
				}
				fmt.Fprintln(c.out)
			}
			fmt.Fprintf(c.out, "Total reclaimed space: %s\n", units.HumanSize(float64(res.Report.SpaceReclaimed)))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	listVarP(cmd.Flags(), &filters, "filter", "", nil, "Provide filter values (e.g. \"until=<timestamp>\")")
	return cmd
}

func (c *cli) newStatsCommand() *cobra.Command {
	var noStream, all bool
	var format string
	cmd := &cobra.Command{
		Use:   "stats [OPTIONS] [CONTAINER...]",
		Short: "Display a live stream of container(s) resource usage statistics",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			ctx, cancel := interruptible(cmd.Context())
			defer cancel()
			if len(args) == 0 {
				res, err := cl.ContainerList(ctx, client.ContainerListOptions{All: all})
				if err != nil {
					return err
				}
				for _, s := range res.Items {
					args = append(args, s.ID[:12])
				}
			}
			for {
				rows := make([]any, 0, len(args))
				for _, id := range args {
					res, err := cl.ContainerStats(ctx, id, client.ContainerStatsOptions{Stream: false, IncludePreviousSample: true})
					if err != nil {
						return err
					}
					var s container.StatsResponse
					err = json.NewDecoder(res.Body).Decode(&s)
					_ = res.Body.Close()
					if err != nil {
						return fmt.Errorf("decode stats of %s: %w", id, err)
					}
					rows = append(rows, statsRow{s: s, id: id})
				}
				f := format
				if f == "" {
					f = defaultStatsFormat
				}
				if !noStream {
					fmt.Fprint(c.out, "\033[2J\033[H")
				}
				if err := (listFormat{format: f, headers: statsHeaders}).write(c.out, rows); err != nil {
					return err
				}
				if noStream {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
			}
		},
	}
	cmd.Flags().BoolVar(&noStream, "no-stream", false, "Disable streaming stats and only pull the first result")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "Show all containers (default shows just running)")
	cmd.Flags().StringVar(&format, "format", "", "Format output using a custom template")
	cmd.Flags().Bool("no-trunc", false, "Do not truncate output")
	return cmd
}

func (c *cli) newCpCommand() *cobra.Command {
	var archiveMode, followLink bool
	cmd := &cobra.Command{
		Use:   "cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n  berth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
		Short: "Copy files/folders between a container and the local filesystem",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			srcCtr, srcPath, srcIsCtr := splitCpArg(args[0])
			dstCtr, dstPath, dstIsCtr := splitCpArg(args[1])
			switch {
			case srcIsCtr && !dstIsCtr:
				res, err := cl.CopyFromContainer(ctx, srcCtr, client.CopyFromContainerOptions{SourcePath: srcPath})
				if err != nil {
					return err
				}
				defer res.Content.Close()
				if dstPath == "-" {
					_, err = io.Copy(c.out, res.Content)
					return err
				}
				return extractLocal(res.Content, dstPath, res.Stat, archiveMode)
			case !srcIsCtr && dstIsCtr:
				var r io.Reader
				if srcPath == "-" {
					r = c.in
				} else {
					pr, pw := io.Pipe()
					go func() { pw.CloseWithError(tarLocal(pw, srcPath, followLink)) }()
					r = pr
				}
				// Copy into the destination directory; a destination that is not an existing
				// directory names the copy (docker cp semantics).
				destDir := dstPath
				st, err := cl.ContainerStatPath(ctx, dstCtr, client.ContainerStatPathOptions{Path: dstPath})
				if err != nil || !st.Stat.Mode.IsDir() {
					if srcPath == "-" {
						return fmt.Errorf("destination %q must be a directory when copying from stdin", dstPath)
					}
					destDir = filepath.Dir(dstPath)
					pr, pw := io.Pipe()
					go func() { pw.CloseWithError(tarLocalAs(pw, srcPath, filepath.Base(dstPath), followLink)) }()
					r = pr
				}
				_, err = cl.CopyToContainer(ctx, dstCtr, client.CopyToContainerOptions{DestinationPath: destDir, Content: r, CopyUIDGID: archiveMode})
				return err
			default:
				return statusError{status: exitUsage, msg: "copying between containers or between local paths is not supported: one of the paths must be CONTAINER:PATH"}
			}
		},
	}
	cmd.Flags().BoolVarP(&archiveMode, "archive", "a", false, "Archive mode (copy all uid/gid information)")
	cmd.Flags().BoolVarP(&followLink, "follow-link", "L", false, "Always follow symbol link in SRC_PATH")
	return cmd
}

// splitCpArg splits "ctr:/path"; local paths (absolute, ./x, or without a colon) are not
// container paths.
func splitCpArg(a string) (ctr, p string, isCtr bool) {
	if strings.HasPrefix(a, "/") || strings.HasPrefix(a, ".") {
		return "", a, false
	}
	ctr, p, ok := strings.Cut(a, ":")
	if !ok || ctr == "" {
		return "", a, false
	}
	return ctr, p, true
}

// tarLocal writes a tar of a local path named by its base name.
func tarLocal(w io.Writer, src string, follow bool) error {
	return tarLocalAs(w, src, filepath.Base(filepath.Clean(src)), follow)
}

func tarLocalAs(w io.Writer, src, name string, follow bool) error {
	tw := tar.NewWriter(w)
	stat := os.Lstat
	if follow {
		stat = os.Stat
	}
	if _, err := stat(src); err != nil {
		return err
	}
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(filepath.Join(name, rel))
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// extractLocal unpacks what docker cp got from a container to dst: into dst when it is an
// existing directory, else as dst itself (renaming the archive's top entry). Entries never
// leave the destination.
func extractLocal(r io.Reader, dst string, st container.PathStat, keepOwner bool) error {
	base := dst
	rename := ""
	if fi, err := os.Stat(dst); err != nil || !fi.IsDir() {
		base, rename = filepath.Dir(dst), filepath.Base(dst)
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(hdr.Name)
		if rename != "" {
			parts := strings.SplitN(name, string(filepath.Separator), 2)
			parts[0] = rename
			name = filepath.Join(parts...)
		}
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) {
			return fmt.Errorf("refusing archive entry %q outside the destination", hdr.Name)
		}
		target := filepath.Join(base, name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, os.FileMode(hdr.Mode).Perm()); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(hdr.Mode).Perm())
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			_ = os.Remove(target)
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return err
			}
		default:
			continue
		}
		if keepOwner {
			_ = os.Lchown(target, hdr.Uid, hdr.Gid)
		}
		if hdr.Typeflag != tar.TypeSymlink {
			_ = os.Chtimes(target, hdr.ModTime, hdr.ModTime)
		}
	}
}

// sortedKeys returns a map's keys in order.
func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
