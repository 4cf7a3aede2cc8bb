package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/berth-dev/berth/internal/daemon"
	"github.com/spf13/cobra"
)

// newDaemonCommand is `berth daemon`: it runs in the foreground until SIGTERM or SIGINT.
func newDaemonCommand() *cobra.Command {
	var (
		cfg       daemon.Config
		logLevel  string
		logFormat string
		tlsVerify bool
	)
	cmd := &cobra.Command{
		Use:   "daemon [OPTIONS]",
		Short: "Run the berth daemon",
		Long: "Run the berth daemon in the foreground. It serves the Docker Engine API on a unix socket " +
			"(root only, mode 0660) and, with mutual TLS, on TCP.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", logLevel)
			}
			opts := &slog.HandlerOptions{Level: level}
			var h slog.Handler
			switch logFormat {
			case "text":
				h = slog.NewTextHandler(os.Stderr, opts)
			case "json":
				h = slog.NewJSONHandler(os.Stderr, opts)
			default:
				return fmt.Errorf("invalid --log-format %q: use text or json", logFormat)
			}
			cfg.Logger = slog.New(h)
			cfg.Debug = level <= slog.LevelDebug
			for _, host := range cfg.Hosts {
				if strings.HasPrefix(host, "tcp://") && !tlsVerify {
					return fmt.Errorf("refusing to listen on %s without --tlsverify: the API grants root on this host, so TCP requires mutual TLS", host)
				}
			}
			if os.Geteuid() != 0 {
				return fmt.Errorf("berth daemon must run as root (it mounts filesystems and creates namespaces)")
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return daemon.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Root, "root", daemon.DefaultRoot, "Root directory of persistent berth state")
	f.StringVar(&cfg.ExecRoot, "exec-root", daemon.DefaultExecRoot, "Root directory for execution state (sockets, shims)")
	listVarP(f, &cfg.Hosts, "host", "H", []string{daemon.DefaultHost}, "Daemon socket(s) to listen on (unix:///path or tcp://addr:port)")
	f.StringVarP(&logLevel, "log-level", "l", "info", `Set the logging level ("debug"|"info"|"warn"|"error")`)
	f.StringVar(&logFormat, "log-format", "text", `Log format ("text"|"json")`)
	f.StringVar(&cfg.CgroupParent, "cgroup-parent", daemon.DefaultCgroupParent, "Parent cgroup for all containers")
	f.BoolVar(&tlsVerify, "tlsverify", false, "Require mutual TLS on TCP listeners")
	f.StringVarP(&cfg.Bridge, "bridge", "b", "berth0", "Bridge of the default network")
	f.StringVar(&cfg.BridgePrefix, "bridge-prefix", "br-", "Name prefix of user networks' bridges")
	f.StringVar(&cfg.NFTable, "nftables-table", "berth", "Name of berth's nftables table (family ip)")
	listVarP(f, &cfg.InsecureRegistries, "insecure-registry", "", nil, "Registry (host[:port] or CIDR) to reach over plain HTTP")
	listVarP(f, &cfg.Hub.Mirrors, "registry-mirror", "", nil, "Preferred Docker registry mirror (http:// or https:// URL; tried in order before Docker Hub)")
	// Tests point "Docker Hub" at a local registry: they have no internet.
	f.StringVar(&cfg.Hub.Endpoint, "registry-hub", "", "URL that replaces Docker Hub's registry (testing)")
	_ = f.MarkHidden("registry-hub")
	_ = f.MarkHidden("bridge-prefix")
	_ = f.MarkHidden("nftables-table")
	f.StringVar(&cfg.TLS.CACert, "tlscacert", "", "CA certificate that client certificates must be signed by")
	f.StringVar(&cfg.TLS.Cert, "tlscert", "", "Server TLS certificate")
	f.StringVar(&cfg.TLS.Key, "tlskey", "", "Server TLS key")
	return cmd
}
