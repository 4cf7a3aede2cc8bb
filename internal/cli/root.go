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
	root := c.newRootCommand()
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

func (c *cli) newRootCommand() *cobra.Command {
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

	root.AddCommand(
		newDaemonCommand(),
		c.newVersionCommand(),
		c.newInfoCommand(),
		c.newEventsCommand(),
		c.newSystemCommand(),
		c.newImageCommand(),
		c.newInspectCommand(),
		c.newContainerCommand(),
		c.newNetworkCommand(),
		c.newPortCommand(),
		c.newVolumeCommand(),
		c.newCommitCommand(),
		c.newBuildCommand(),
		c.newLoginCommand(),
		c.newLogoutCommand(),
		newRegistryCommand(),
		sim.NewCommand(),
		ocicmd.NewCommand(),
	)
	root.AddCommand(c.imageShortcuts()...)
	root.AddCommand(c.containerShortcuts()...)
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
