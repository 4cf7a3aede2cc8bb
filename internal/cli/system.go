package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/berth-dev/berth/internal/version"
	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

func (c *cli) newSystemCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "system",
		Short: "Manage berth",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(c.newInfoCommand(), c.newEventsCommand(), c.newSystemDFCommand(), c.newSystemPruneCommand())
	return cmd
}

// clientVersion is the client half of `berth version`.
type clientVersion struct {
	Version    string
	APIVersion string `json:"ApiVersion"`
	GoVersion  string
	GitCommit  string
	BuildTime  string `json:"BuildTime"`
	Os         string
	Arch       string
}

// versionInfo is what `berth version --format` templates see.
type versionInfo struct {
	Client clientVersion
	Server *system.VersionResponse
}

func (c *cli) newVersionCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version [OPTIONS]",
		Short: "Show the berth version information",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			vi := versionInfo{Client: clientVersion{
				Version: version.Version, APIVersion: version.APIVersion, GoVersion: runtime.Version(),
				GitCommit: version.GitCommit, BuildTime: version.BuildTime, Os: runtime.GOOS, Arch: runtime.GOARCH,
			}}
			sv, serverErr := cl.ServerVersion(cmd.Context(), client.ServerVersionOptions{})
			if serverErr == nil {
				// The full response carries Go version, commit and build time; ServerVersionResult
				// drops them, so read them from the Engine component.
				vr := system.VersionResponse{
					Platform: system.PlatformInfo{Name: sv.Platform.Name}, Version: sv.Version,
					APIVersion: sv.APIVersion, MinAPIVersion: sv.MinAPIVersion, Os: sv.Os, Arch: sv.Arch,
					Components: sv.Components,
				}
				for _, comp := range sv.Components {
					if comp.Name == "Engine" {
						vr.GoVersion, vr.GitCommit = comp.Details["GoVersion"], comp.Details["GitCommit"]
						vr.KernelVersion, vr.BuildTime = comp.Details["KernelVersion"], comp.Details["BuildTime"]
					}
				}
				vi.Server = &vr
				vi.Client.APIVersion = cl.ClientVersion()
			}
			if format != "" {
				if err := c.execTemplate(format, vi); err != nil {
					return err
				}
			} else {
				writeVersion(c.out, vi)
			}
			return serverErr
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template ('json' or 'TEMPLATE')")
	return cmd
}

// execTemplate prints v with a --format template ("json" is the whole value as JSON).
func (c *cli) execTemplate(format string, v any) error {
	if format == "json" {
		format = "{{json .}}"
	}
	t, err := parseTemplate(format + "\n")
	if err != nil {
		return err
	}
	if err := t.Execute(c.out, v); err != nil {
		return fmt.Errorf("template: %w", err)
	}
	return nil
}

func writeVersion(out io.Writer, vi versionInfo) {
	tw := tabwriter.NewWriter(out, 20, 1, 1, ' ', 0)
	fmt.Fprintf(tw, "Client:\n")
	fmt.Fprintf(tw, " Version:\t%s\n", vi.Client.Version)
	fmt.Fprintf(tw, " API version:\t%s\n", vi.Client.APIVersion)
	fmt.Fprintf(tw, " Go version:\t%s\n", vi.Client.GoVersion)
	fmt.Fprintf(tw, " Git commit:\t%s\n", vi.Client.GitCommit)
	if vi.Client.BuildTime != "" {
		fmt.Fprintf(tw, " Built:\t%s\n", vi.Client.BuildTime)
	}
	fmt.Fprintf(tw, " OS/Arch:\t%s/%s\n", vi.Client.Os, vi.Client.Arch)
	if s := vi.Server; s != nil {
		fmt.Fprintf(tw, "\nServer: %s\n", s.Platform.Name)
		fmt.Fprintf(tw, " Engine:\n")
		fmt.Fprintf(tw, "  Version:\t%s\n", s.Version)
		fmt.Fprintf(tw, "  API version:\t%s (minimum version %s)\n", s.APIVersion, s.MinAPIVersion)
		fmt.Fprintf(tw, "  Go version:\t%s\n", s.GoVersion)
		fmt.Fprintf(tw, "  Git commit:\t%s\n", s.GitCommit)
		if s.BuildTime != "" {
			fmt.Fprintf(tw, "  Built:\t%s\n", s.BuildTime)
		}
		fmt.Fprintf(tw, "  OS/Arch:\t%s/%s\n", s.Os, s.Arch)
		fmt.Fprintf(tw, "  Kernel version:\t%s\n", s.KernelVersion)
		fmt.Fprintf(tw, "  Experimental:\tfalse\n")
	}
	_ = tw.Flush()
}

// infoView is what `berth info --format` templates see: the server's Info fields at the top
// level, as with docker.
type infoView struct {
	*system.Info
	ClientInfo clientVersion
}

func (c *cli) newInfoCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "info [OPTIONS]",
		Short: "Display system-wide information",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.Info(cmd.Context(), client.InfoOptions{})
			if err != nil {
				return err
			}
			if format != "" {
				view := infoView{Info: &res.Info, ClientInfo: clientVersion{Version: version.Version, GoVersion: runtime.Version(), Os: runtime.GOOS, Arch: runtime.GOARCH}}
				if format == "json" {
					// Docker's `info --format json` is the server info with a ClientInfo member.
					b, err := json.Marshal(res.Info)
					if err != nil {
						return err
					}
					var m map[string]any
					if err := json.Unmarshal(b, &m); err != nil {
						return err
					}
					m["ClientInfo"] = view.ClientInfo
					return c.execTemplate("{{json .}}", m)
				}
				return c.execTemplate(format, view)
			}
			writeInfo(c.out, c.err, &res.Info)
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template ('json' or 'TEMPLATE')")
	return cmd
}

func writeInfo(out, errOut io.Writer, i *system.Info) {
	p := func(format string, a ...any) { fmt.Fprintf(out, format, a...) }
	p("Client:\n")
	p(" Version:    %s\n", version.Version)
	p("\nServer:\n")
	p(" Containers: %d\n", i.Containers)
	p("  Running: %d\n", i.ContainersRunning)
	p("  Paused: %d\n", i.ContainersPaused)
	p("  Stopped: %d\n", i.ContainersStopped)
	p(" Images: %d\n", i.Images)
	p(" Server Version: %s\n", i.ServerVersion)
	p(" Storage Driver: %s\n", i.Driver)
	for _, kv := range i.DriverStatus {
		p("  %s: %s\n", kv[0], kv[1])
	}
	if i.LoggingDriver != "" {
		p(" Logging Driver: %s\n", i.LoggingDriver)
	}
	if i.CgroupDriver != "" {
		p(" Cgroup Driver: %s\n", i.CgroupDriver)
	}
	if i.CgroupVersion != "" {
		p(" Cgroup Version: %s\n", i.CgroupVersion)
	}
	if len(i.Runtimes) > 0 {
		names := make([]string, 0, len(i.Runtimes))
		for n := range i.Runtimes {
			names = append(names, n)
		}
		sort.Strings(names)
		p(" Runtimes: %s\n", strings.Join(names, " "))
		p(" Default Runtime: %s\n", i.DefaultRuntime)
	}
	if len(i.SecurityOptions) > 0 {
		p(" Security Options:\n")
		for _, o := range i.SecurityOptions {
			p("  %s\n", strings.TrimPrefix(o, "name="))
		}
	}
	p(" Kernel Version: %s\n", i.KernelVersion)
	p(" Operating System: %s\n", i.OperatingSystem)
	p(" OSType: %s\n", i.OSType)
	p(" Architecture: %s\n", i.Architecture)
	p(" CPUs: %d\n", i.NCPU)
	p(" Total Memory: %s\n", units.BytesSize(float64(i.MemTotal)))
	p(" Name: %s\n", i.Name)
	p(" ID: %s\n", i.ID)
	p(" Berth Root Dir: %s\n", i.DockerRootDir)
	p(" Debug Mode: %v\n", i.Debug)
	p(" Experimental: %v\n", i.ExperimentalBuild)
	p(" Live Restore Enabled: %v\n", i.LiveRestoreEnabled)
	for _, w := range i.Warnings {
		fmt.Fprintln(errOut, w)
	}
}

func (c *cli) newEventsCommand() *cobra.Command {
	var (
		since, until, format string
		filters              []string
	)
	cmd := &cobra.Command{
		Use:   "events [OPTIONS]",
		Short: "Get real time events from the server",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := parseFilterFlags(filters)
			if err != nil {
				return err
			}
			var tmpl interface {
				Execute(io.Writer, any) error
			}
			switch format {
			case "":
			case "json":
				if tmpl, err = parseTemplate("{{json .}}\n"); err != nil {
					return err
				}
			default:
				if tmpl, err = parseTemplate(format + "\n"); err != nil {
					return err
				}
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			res := cl.Events(ctx, client.EventsListOptions{Since: since, Until: until, Filters: client.Filters(f)})
			for {
				select {
				case m := <-res.Messages:
					if err := c.printEvent(tmpl, m); err != nil {
						return err
					}
				case err := <-res.Err:
					if err == nil || errors.Is(err, io.EOF) {
						return nil
					}
					if ctx.Err() != nil {
						return nil // interrupted by the user
					}
					return err
				}
			}
		},
	}
	fl := cmd.Flags()
	listVarP(fl, &filters, "filter", "f", nil, "Filter output based on conditions provided")
	fl.StringVar(&format, "format", "", "Format output using a custom template ('json' or 'TEMPLATE')")
	fl.StringVar(&since, "since", "", "Show all events created since timestamp")
	fl.StringVar(&until, "until", "", "Stream events until this timestamp")
	return cmd
}

func (c *cli) printEvent(tmpl interface {
	Execute(io.Writer, any) error
}, m events.Message) error {
	if tmpl == nil {
		_, err := fmt.Fprintln(c.out, eventLine(m))
		return err
	}
	if err := tmpl.Execute(c.out, m); err != nil {
		return fmt.Errorf("template: %w", err)
	}
	return nil
}
