// Package cli is the `berth` command line: Docker's verbs, flags and output layout, talking to
// the daemon only through the Docker Engine API client (github.com/moby/moby/client). It must
// not import daemon-side packages for anything but the `daemon` verb, and must not touch the
// daemon's state on disk.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/berth-dev/berth/internal/runtime/linux/ocicmd"
	"github.com/berth-dev/berth/internal/sim"
	"github.com/berth-dev/berth/internal/version"
	"github.com/moby/moby/client"
	"github.com/moby/term"
	"github.com/spf13/cobra"
)

const (
	// DefaultHost is where the daemon listens by default.
	DefaultHost = "unix:///run/berth/berth.sock"
	// envHost overrides DefaultHost, like DOCKER_HOST for docker.
	envHost = "BERTH_HOST"
	// envCertPath is the directory with ca.pem, cert.pem and key.pem, like DOCKER_CERT_PATH.
	envCertPath = "BERTH_CERT_PATH"
	// envTLSVerify turns on --tlsverify, like DOCKER_TLS_VERIFY.
	envTLSVerify = "BERTH_TLS_VERIFY"
)

// exit codes, as docker's.
const (
	exitError = 1
	exitUsage = 125
)

// statusError carries an exit code other than 1, with an optional message for stderr.
type statusError struct {
	status int
	msg    string
}

func (e statusError) Error() string { return e.msg }

// cli is the state of one invocation: global options, streams and the lazily made API client.
type cli struct {
	host      string
	logLevel  string
	tls       bool
	tlsVerify bool
	tlsCACert string
	tlsCert   string
	tlsKey    string

	in       io.Reader
	out, err io.Writer

	apiClient *client.Client
}

// Execute runs the command line and returns the process exit code.
func Execute() int {
	c := &cli{in: os.Stdin, out: os.Stdout, err: os.Stderr}
	return c.run(os.Args[1:])
}

func (c *cli) run(args []string) int {
	return c.execute(c.commandTree(args), args)
}

// execute runs args on the command tree root and returns the exit code.
func (c *cli) execute(root *cobra.Command, args []string) int {
	root.SetArgs(args)
	// No signal handling here: `berth shim`, `berth init` and the OCI runtime verbs need the
	// default dispositions. Client verbs that must clean up on ^C use interruptible.
	err := root.ExecuteContext(context.Background())
	if c.apiClient != nil {
		_ = c.apiClient.Close()
	}
	if err == nil {
		return 0
	}
	var se statusError
	if errors.As(err, &se) {
		if se.msg != "" {
			fmt.Fprintln(c.err, se.msg)
		}
		return se.status
	}
	fmt.Fprintln(c.err, c.userError(err))
	return exitError
}

// userError rewrites errors for the user: connection failures name berth's daemon rather than
// Docker's.
func (c *cli) userError(err error) string {
	if client.IsErrConnectionFailed(err) {
		if errors.Is(err, os.ErrPermission) || strings.Contains(err.Error(), "permission denied") {
			return fmt.Sprintf("permission denied while trying to connect to the berth daemon at %s", c.host)
		}
		return fmt.Sprintf("Cannot connect to the berth daemon at %s. Is the daemon running?", c.host)
	}
	return err.Error()
}

// newRootCommand returns the whole command tree.
func (c *cli) newRootCommand() *cobra.Command {
	root := c.newRoot()
	c.addAllCommands(root)
	return finishTree(root)
}

// addAllCommands gives root every subcommand, as help, suggestions and completion need.
func (c *cli) addAllCommands(root *cobra.Command) {
	for _, name := range strings.Fields(topCommandNames) {
		root.AddCommand(c.topCommand(name))
	}
}

// commandTree returns the command tree that args need. Building every command costs a
// short-lived process ~100 page faults (~0.3 ms here) that `berth run` waits for, so when
// args name a subcommand (after global flags only) the root gets that subcommand alone, and
// `berth --version` gets none; anything else (no verb, an unknown one, `help`, a help flag
// before the verb) gets the whole tree. A subcommand's help, usage and errors do not depend
// on its siblings (TestLazyTreeMatchesFullTree).
func (c *cli) commandTree(args []string) *cobra.Command {
	root := c.newRoot()
	verb, version, ok := scanGlobalArgs(root, args)
	switch {
	case !ok:
	case verb != "":
		if cmd := c.topCommand(verb); cmd != nil {
			root.AddCommand(cmd)
			return finishTree(root)
		}
	case version:
		return finishTree(root)
	}
	c.addAllCommands(root)
	return finishTree(root)
}

// scanGlobalArgs finds the verb the way cobra's Traverse does: the first argument that is
// neither a global flag nor a global flag's value. version reports --version or -v among the
// global flags. ok is false if anything else comes first (an unknown flag, --help, a flag
// whose value cobra might take differently), for which the caller builds the whole tree.
func scanGlobalArgs(root *cobra.Command, args []string) (verb string, version, ok bool) {
	fs := root.Flags()
	takesValue := false
	for _, arg := range args {
		if takesValue {
			takesValue = false
			continue
		}
		switch {
		case arg == "--version" || arg == "-v":
			// Cobra defines the flag only once it has found the command: until then it
			// takes the next argument for its value. Keep to the simple case.
			version = true
		case strings.HasPrefix(arg, "--"):
			name, _, hasValue := strings.Cut(arg[2:], "=")
			f := fs.Lookup(name)
			if f == nil {
				return "", false, false
			}
			takesValue = !hasValue && f.NoOptDefVal == ""
		case strings.HasPrefix(arg, "-") && len(arg) > 1:
			f := fs.ShorthandLookup(arg[1:2])
			if f == nil || f.NoOptDefVal != "" {
				return "", false, false
			}
			takesValue = len(arg) == 2
		default:
			if version {
				return "", false, false
			}
			return arg, false, true
		}
	}
	return "", version, !takesValue
}

// topCommandNames are the root's subcommands, in the order they were always added.
const topCommandNames = "daemon version info events system image inspect container network port " +
	"volume commit build login logout registry sim oci " +
	"images rmi tag save load import history pull push " +
	"run create start stop restart kill rm ps logs wait top stats attach exec pause unpause " +
	"rename update cp diff export"

// topCommand makes the root's subcommand that name (or one of its aliases) calls, or nil.
func (c *cli) topCommand(name string) *cobra.Command {
	switch name {
	case "daemon":
		return newDaemonCommand()
	case "version":
		return c.newVersionCommand()
	case "info":
		return c.newInfoCommand()
	case "events":
		return c.newEventsCommand()
	case "system":
		return c.newSystemCommand()
	case "image":
		return c.newImageCommand()
	case "inspect":
		return c.newInspectCommand()
	case "container":
		return c.newContainerCommand()
	case "network":
		return c.newNetworkCommand()
	case "port":
		return c.newPortCommand()
	case "volume":
		return c.newVolumeCommand()
	case "commit":
		return c.newCommitCommand()
	case "build":
		return c.newBuildCommand()
	case "login":
		return c.newLoginCommand()
	case "logout":
		return c.newLogoutCommand()
	case "registry":
		return newRegistryCommand()
	case "sim":
		return sim.NewCommand()
	case "oci":
		return ocicmd.NewCommand()
	// docker's top-level forms of the image verbs
	case "images":
		return c.newImagesCommand("images [OPTIONS] [REPOSITORY[:TAG]]")
	case "rmi":
		return c.newRmiCommand("rmi [OPTIONS] IMAGE [IMAGE...]")
	case "tag":
		return c.newTagCommand("tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]")
	case "save":
		return c.newSaveCommand("save [OPTIONS] IMAGE [IMAGE...]")
	case "load":
		return c.newLoadCommand("load [OPTIONS]")
	case "import":
		return c.newImportCommand("import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]")
	case "history":
		return c.newHistoryCommand("history [OPTIONS] IMAGE")
	case "pull":
		return c.newPullCommand("pull [OPTIONS] NAME[:TAG|@DIGEST]")
	case "push":
		return c.newPushCommand("push [OPTIONS] NAME[:TAG]")
	// and of the container verbs
	case "run":
		return c.newRunCommand()
	case "create":
		return c.newCreateCommand()
	case "start":
		return c.newStartCommand()
	case "stop":
		return c.newStopCommand()
	case "restart":
		return c.newRestartCommand()
	case "kill":
		return c.newKillCommand()
	case "rm", "remove":
		return c.newRmCommand("rm")
	case "ps", "list":
		return c.newPsCommand("ps")
	case "logs":
		return c.newLogsCommand()
	case "wait":
		return c.newWaitCommand()
	case "top":
		return c.newTopCommand()
	case "stats":
		return c.newStatsCommand()
	case "attach":
		return c.newAttachCommand()
	case "exec":
		return c.newExecCommand()
	case "pause":
		return c.newPauseCommand(true)
	case "unpause":
		return c.newPauseCommand(false)
	case "rename":
		return c.newRenameCommand()
	case "update":
		return c.newUpdateCommand()
	case "cp":
		return c.newCpCommand()
	case "diff":
		return c.newDiffCommand()
	case "export":
		return c.newExportCommand()
	}
	return nil
}

// newRoot returns the root command with the global options and no subcommands.
func (c *cli) newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "berth [OPTIONS] COMMAND [ARG...]",
		Short:         "A Docker-compatible container platform",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version,
		CompletionOptions: cobra.CompletionOptions{
			DisableDefaultCmd: true,
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return c.setupLogging()
		},
		// A word that names no command is an error, as with docker (cobra would show the
		// root's help and succeed).
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			msg := fmt.Sprintf("berth: '%s' is not a berth command.", args[0])
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "\nDid you mean " + strings.Join(s, " or ") + "?"
			}
			return errors.New(msg + "\nSee 'berth --help'")
		},
	}
	root.SetVersionTemplate("berth version {{.Version}}\n")
	root.SetOut(c.out)
	root.SetErr(c.err)
	root.SetIn(c.in)
	root.SetFlagErrorFunc(flagError)

	defaultHost := os.Getenv(envHost)
	if defaultHost == "" {
		defaultHost = DefaultHost
	}
	certPath := os.Getenv(envCertPath)
	if certPath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			certPath = filepath.Join(home, ".berth")
		}
	}
	// Global options are the root's own flags and come before the verb, as with docker
	// (`berth -H unix:///x.sock images`): `history -H` is --human and `daemon -H` its listener.
	root.TraverseChildren = true
	pf := root.Flags()
	pf.StringVarP(&c.host, "host", "H", defaultHost, "Daemon socket to connect to (env "+envHost+")")
	pf.StringVarP(&c.logLevel, "log-level", "l", "info", `Set the logging level ("debug"|"info"|"warn"|"error")`)
	pf.BoolVar(&c.tls, "tls", false, "Use TLS; implied by --tlsverify")
	pf.BoolVar(&c.tlsVerify, "tlsverify", os.Getenv(envTLSVerify) != "", "Use TLS and verify the remote (env "+envTLSVerify+")")
	pf.StringVar(&c.tlsCACert, "tlscacert", filepath.Join(certPath, "ca.pem"), "Trust certs signed only by this CA")
	pf.StringVar(&c.tlsCert, "tlscert", filepath.Join(certPath, "cert.pem"), "Path to TLS certificate file")
	pf.StringVar(&c.tlsKey, "tlskey", filepath.Join(certPath, "key.pem"), "Path to TLS key file")

	return root
}

// finishTree gives every command docker's usage line and flag errors.
func finishTree(root *cobra.Command) *cobra.Command {
	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		cmd.DisableFlagsInUseLine = true
		cmd.SetFlagErrorFunc(flagError)
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return root
}

// flagError reports a flag parsing error with docker's wording and exit code.
func flagError(cmd *cobra.Command, err error) error {
	return statusError{status: exitUsage, msg: fmt.Sprintf("%s\nSee '%s --help'.", err, cmd.CommandPath())}
}

func (c *cli) setupLogging() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return statusError{status: exitUsage, msg: fmt.Sprintf("invalid --log-level %q: use debug, info, warn or error", c.logLevel)}
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(c.err, &slog.HandlerOptions{Level: level})))
	return nil
}

// client returns the API client, making it on first use.
func (c *cli) client() (*client.Client, error) {
	if c.apiClient != nil {
		return c.apiClient, nil
	}
	opts := []client.Opt{
		client.WithHost(c.host),
		client.WithUserAgent("berth-cli/" + version.Version),
	}
	if strings.HasPrefix(c.host, "tcp://") && (c.tls || c.tlsVerify) {
		ca := ""
		if c.tlsVerify {
			ca = c.tlsCACert
		}
		opts = append(opts, client.WithTLSClientConfig(ca, c.tlsCert, c.tlsKey))
	}
	cl, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("invalid daemon host %q: %w", c.host, err)
	}
	c.apiClient = cl
	return cl, nil
}

// interruptible returns a context that ends on SIGINT or SIGTERM, for verbs that stream
// until interrupted (events) or must remove partial output (save -o).
func interruptible(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// isTerminal reports whether w is a terminal, and its file descriptor.
func isTerminal(v any) (uintptr, bool) {
	return term.GetFdInfo(v)
}

// Argument checks with docker's messages.

func requiresMinArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) >= n {
			return nil
		}
		return argsError(cmd, fmt.Sprintf("requires at least %d %s", n, plural(n)))
	}
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == n {
			return nil
		}
		return argsError(cmd, fmt.Sprintf("requires exactly %d %s", n, plural(n)))
	}
}

func requiresRangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) >= lo && len(args) <= hi {
			return nil
		}
		return argsError(cmd, fmt.Sprintf("requires at least %d and at most %d %s", lo, hi, plural(hi)))
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return argsError(cmd, "accepts no arguments")
}

func plural(n int) string {
	if n == 1 {
		return "argument"
	}
	return "arguments"
}

func argsError(cmd *cobra.Command, what string) error {
	return statusError{status: exitError, msg: fmt.Sprintf("%q %s.\nSee '%s --help'.\n\nUsage:  %s\n\n%s",
		cmd.CommandPath(), what, cmd.CommandPath(), cmd.UseLine(), cmd.Short)}
}
