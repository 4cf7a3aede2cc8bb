package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/berth-dev/berth/internal/registry"
	"github.com/spf13/cobra"
)

// defaultRegistryRoot is where `berth registry serve` keeps its content by default.
const defaultRegistryRoot = "/var/lib/berth/registry"

// newRegistryCommand is `berth registry`: an OCI distribution-spec registry server and its
// garbage collector. It runs standalone and does not talk to the daemon.
func newRegistryCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry COMMAND",
		Short: "Run an OCI registry server",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(newRegistryServeCommand(), newRegistryGCCommand())
	return cmd
}

func newRegistryServeCommand() *cobra.Command {
	var (
		cfg      registry.Config
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "serve [OPTIONS]",
		Short: "Serve an OCI distribution-spec v1.1 registry",
		Long: "Serve an OCI distribution-spec v1.1 registry (the /v2/ API that docker, podman, crane and " +
			"oras push to and pull from) in the foreground until SIGINT or SIGTERM. Without --tls-cert it " +
			"serves plain HTTP; without --htpasswd anyone who can reach it can push and delete.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := registryLogger(logLevel)
			if err != nil {
				return err
			}
			cfg.Logger = logger
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return registry.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "addr", ":5000", "Address to listen on")
	f.StringVar(&cfg.Root, "root", defaultRegistryRoot, "Directory of the registry's content and database")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "Serve HTTPS with this certificate (PEM)")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "Private key of --tls-cert (PEM)")
	f.StringVar(&cfg.TLSClientCA, "tls-client-ca", "", "Require client certificates signed by this CA (mutual TLS)")
	f.StringVar(&cfg.Htpasswd, "htpasswd", "", "Require basic authentication against this htpasswd file (bcrypt entries, as htpasswd -B writes them)")
	f.BoolVar(&cfg.NoDelete, "no-delete", false, "Refuse to delete manifests, tags and blobs (405 UNSUPPORTED)")
	f.StringVarP(&logLevel, "log-level", "l", "info", `Set the logging level ("debug"|"info"|"warn"|"error"); debug logs every request`)
	return cmd
}

func newRegistryGCCommand() *cobra.Command {
	var (
		opts     registry.GCOptions
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "garbage-collect [OPTIONS]",
		Short: "Delete content that no manifest of the registry references",
		Long: "Delete blobs that no kept manifest references, blob links and stale upload sessions. " +
			"With --delete-untagged, manifests that no tag reaches (directly, through an index or as a " +
			"referrer) are deleted first. The registry must not be serving: garbage-collect refuses to run " +
			"while `berth registry serve` holds the root.",
		Aliases: []string{"gc"},
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := registryLogger(logLevel)
			if err != nil {
				return err
			}
			opts.Logger = logger
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			res, err := registry.GarbageCollect(ctx, opts)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			verb := "deleted"
			if opts.DryRun {
				verb = "would delete"
			}
			for _, m := range res.Manifests {
				fmt.Fprintf(out, "%s manifest %s\n", verb, m)
			}
			for _, b := range res.Blobs {
				fmt.Fprintf(out, "%s blob %s\n", verb, b)
			}
			fmt.Fprintf(out, "%s %d manifests, %d blob links, %d blobs (%d bytes), %d stale uploads\n",
				verb, len(res.Manifests), len(res.Links), len(res.Blobs), res.Bytes, res.Uploads)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Root, "root", defaultRegistryRoot, "Directory of the registry's content and database")
	f.BoolVar(&opts.DeleteUntagged, "delete-untagged", false, "Also delete manifests that no tag reaches")
	f.BoolVar(&opts.DryRun, "dry-run", false, "Only print what would be deleted")
	f.StringVarP(&logLevel, "log-level", "l", "info", `Set the logging level ("debug"|"info"|"warn"|"error")`)
	return cmd
}

// registryLogger is the text logger on stderr of the registry verbs.
func registryLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, statusError{status: exitUsage, msg: fmt.Sprintf("invalid --log-level %q: use debug, info, warn or error", level)}
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
