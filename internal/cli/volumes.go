package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/containerd/errdefs"
	units "github.com/docker/go-units"
	"github.com/moby/moby/api/types/volume"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// newVolumeCommand is `berth volume ...`.
func (c *cli) newVolumeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "volume",
		Short: "Manage volumes",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(c.newVolumeCreateCommand(), c.newVolumeLsCommand(), c.newVolumeInspectCommand(),
		c.newVolumeRmCommand(), c.newVolumePruneCommand())
	return cmd
}

// parseKVList turns KEY=VALUE flag values into a map; flag names the flag in errors.
func parseKVList(flag string, vals []string) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range vals {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("invalid %s %q: use KEY=VALUE", flag, kv)
		}
		m[k] = v
	}
	return m, nil
}

func (c *cli) newVolumeCreateCommand() *cobra.Command {
	var (
		driver, name string
		labels, opts []string
	)
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] [VOLUME]",
		Short: "Create a volume",
		Args:  requiresRangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if name != "" && name != args[0] {
					return fmt.Errorf("conflicting options: cannot specify a volume-name through both --name and as a positional arg")
				}
				name = args[0]
			}
			lm, err := parseKVList("--label", labels)
			if err != nil {
				return err
			}
			om, err := parseKVList("--opt", opts)
			if err != nil {
				return err
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.VolumeCreate(cmd.Context(), client.VolumeCreateOptions{Name: name, Driver: driver, Labels: lm, DriverOpts: om})
			if err != nil {
				return err
			}
			fmt.Fprintln(c.out, res.Volume.Name)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&driver, "driver", "d", "local", "Specify volume driver name")
	f.StringVar(&name, "name", "", "Specify volume name")
	_ = f.MarkHidden("name")
	listVarP(f, &labels, "label", "", nil, "Set metadata for a volume")
	listVarP(f, &opts, "opt", "o", nil, "Set driver specific options")
	return cmd
}

// volumeRow is one line of `volume ls`.
type volumeRow struct{ v volume.Volume }

func (r volumeRow) Name() string       { return r.v.Name }
func (r volumeRow) Driver() string     { return r.v.Driver }
func (r volumeRow) Scope() string      { return r.v.Scope }
func (r volumeRow) Mountpoint() string { return r.v.Mountpoint }
func (r volumeRow) Labels() string {
	var parts []string
	for k, v := range r.v.Labels {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}
func (r volumeRow) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"Name": r.v.Name, "Driver": r.v.Driver, "Scope": r.v.Scope,
		"Mountpoint": r.v.Mountpoint, "Labels": r.Labels()})
}

var volumeHeaders = map[string]string{"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT", "Labels": "LABELS"}

func (c *cli) newVolumeLsCommand() *cobra.Command {
	var (
		quiet   bool
		format  string
		filters []string
	)
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List volumes",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := parseFilterFlags(filters)
			if err != nil {
				return err
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.VolumeList(cmd.Context(), client.VolumeListOptions{Filters: client.Filters(f)})
			if err != nil {
				return err
			}
			if format == "" || format == "table" {
				format = "table {{.Driver}}\t{{.Name}}"
			}
			if quiet {
				format = "{{.Name}}"
			}
			rows := make([]any, len(res.Items))
			for i, v := range res.Items {
				rows[i] = volumeRow{v}
			}
			return listFormat{format: format, headers: volumeHeaders}.write(c.out, rows)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&quiet, "quiet", "q", false, "Only display volume names")
	fl.StringVar(&format, "format", "", "Format output using a custom template ('table', 'table TEMPLATE', 'json' or 'TEMPLATE')")
	listVarP(fl, &filters, "filter", "f", nil, "Provide filter values (e.g. \"dangling=true\")")
	return cmd
}

func (c *cli) newVolumeInspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] VOLUME [VOLUME...]",
		Short: "Display detailed information on one or more volumes",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			var objs []any
			var errs []string
			for _, n := range args {
				res, err := cl.VolumeInspect(cmd.Context(), n, client.VolumeInspectOptions{})
				if err != nil {
					if client.IsErrConnectionFailed(err) {
						return err
					}
					errs = append(errs, c.userError(err))
					continue
				}
				objs = append(objs, res.Volume)
			}
			if err := c.printObjects(objs, format); err != nil {
				return err
			}
			if len(errs) > 0 {
				return errors.New(strings.Join(errs, "\n"))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	return cmd
}

// printObjects prints inspect results: an indented JSON array, or a template per object.
func (c *cli) printObjects(objs []any, format string) error {
	if format == "" || format == "json" {
		if objs == nil {
			objs = []any{}
		}
		b, err := json.MarshalIndent(objs, "", "    ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(c.out, string(b))
		return err
	}
	for _, o := range objs {
		if err := c.execTemplate(format, o); err != nil {
			return err
		}
	}
	return nil
}

func (c *cli) newVolumeRmCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] VOLUME [VOLUME...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more volumes",
		Args:    requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			return c.forEach(args, func(n string) error {
				_, err := cl.VolumeRemove(cmd.Context(), n, client.VolumeRemoveOptions{Force: force})
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force the removal of one or more volumes")
	return cmd
}

func (c *cli) newVolumePruneCommand() *cobra.Command {
	var (
		all, force bool
		filters    []string
	)
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused local volumes",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := parseFilterFlags(filters)
			if err != nil {
				return err
			}
			warning := "WARNING! This will remove anonymous local volumes not used by at least one container."
			if all {
				warning = "WARNING! This will remove all local volumes not used by at least one container."
			}
			if !force && !c.confirm(warning) {
				return errors.New("volume prune has been cancelled")
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.VolumePrune(cmd.Context(), client.VolumePruneOptions{All: all, Filters: client.Filters(f)})
			if err != nil {
				return err
			}
			printPruned(c.out, "Deleted Volumes:", res.Report.VolumesDeleted)
			fmt.Fprintf(c.out, "Total reclaimed space: %s\n", units.HumanSize(float64(res.Report.SpaceReclaimed)))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "Remove all unused volumes, not just anonymous ones")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	listVarP(cmd.Flags(), &filters, "filter", "", nil, "Provide filter values (e.g. \"label=<label>\")")
	return cmd
}

func printPruned(out io.Writer, title string, names []string) {
	if len(names) == 0 {
		return
	}
	fmt.Fprintln(out, title)
	for _, n := range names {
		fmt.Fprintln(out, n)
	}
	fmt.Fprintln(out)
}

// newCommitCommand is `berth commit` / `berth container commit`.
func (c *cli) newCommitCommand() *cobra.Command {
	var (
		author, message string
		changes         []string
		pause           bool
	)
	cmd := &cobra.Command{
		Use:   "commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
		Short: "Create a new image from a container's changes",
		Args:  requiresRangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := ""
			if len(args) == 2 {
				ref = args[1]
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.ContainerCommit(cmd.Context(), args[0], client.ContainerCommitOptions{
				Reference: ref, Comment: message, Author: author, Changes: changes, NoPause: !pause,
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(c.out, res.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&author, "author", "a", "", `Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")`)
	listVarP(f, &changes, "change", "c", nil, "Apply Dockerfile instruction to the created image")
	f.StringVarP(&message, "message", "m", "", "Commit message")
	f.BoolVarP(&pause, "pause", "p", true, "Pause container during commit")
	return cmd
}

// newSystemDFCommand is `berth system df`.
func (c *cli) newSystemDFCommand() *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "df [OPTIONS]",
		Short: "Show berth disk usage",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			du, err := cl.DiskUsage(cmd.Context(), client.DiskUsageOptions{Containers: true, Images: true, Volumes: true, BuildCache: true, Verbose: verbose})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.out, 10, 1, 3, ' ', 0)
			fmt.Fprintln(tw, "TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE")
			line := func(typ string, total, active, size, reclaim int64) {
				pct := ""
				if size > 0 {
					pct = fmt.Sprintf(" (%d%%)", reclaim*100/size)
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s%s\n", typ, total, active, units.HumanSize(float64(size)), units.HumanSize(float64(reclaim)), pct)
			}
			line("Images", du.Images.TotalCount, du.Images.ActiveCount, du.Images.TotalSize, du.Images.Reclaimable)
			line("Containers", du.Containers.TotalCount, du.Containers.ActiveCount, du.Containers.TotalSize, du.Containers.Reclaimable)
			line("Local Volumes", du.Volumes.TotalCount, du.Volumes.ActiveCount, du.Volumes.TotalSize, du.Volumes.Reclaimable)
			line("Build Cache", du.BuildCache.TotalCount, du.BuildCache.ActiveCount, du.BuildCache.TotalSize, du.BuildCache.Reclaimable)
			if err := tw.Flush(); err != nil {
				return err
			}
			if !verbose {
				return nil
			}
			fmt.Fprintln(c.out, "\nImages space usage:")
			tw = tabwriter.NewWriter(c.out, 10, 1, 3, ' ', 0)
			fmt.Fprintln(tw, "\nREPOSITORY\tTAG\tIMAGE ID\tSIZE\tCONTAINERS")
			for _, im := range du.Images.Items {
				repo, tag := "<none>", "<none>"
				if len(im.RepoTags) > 0 {
					if i := strings.LastIndex(im.RepoTags[0], ":"); i > 0 {
						repo, tag = im.RepoTags[0][:i], im.RepoTags[0][i+1:]
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", repo, tag, shortImageID(im.ID), units.HumanSize(float64(im.Size)), im.Containers)
			}
			_ = tw.Flush()
			fmt.Fprintln(c.out, "\nContainers space usage:")
			tw = tabwriter.NewWriter(c.out, 10, 1, 3, ' ', 0)
			fmt.Fprintln(tw, "\nCONTAINER ID\tIMAGE\tSIZE\tSTATUS\tNAMES")
			for _, ct := range du.Containers.Items {
				name := ""
				if len(ct.Names) > 0 {
					name = strings.TrimPrefix(ct.Names[0], "/")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ct.ID[:min(12, len(ct.ID))], ct.Image, units.HumanSize(float64(ct.SizeRw)), ct.Status, name)
			}
			_ = tw.Flush()
			fmt.Fprintln(c.out, "\nLocal Volumes space usage:")
			tw = tabwriter.NewWriter(c.out, 10, 1, 3, ' ', 0)
			fmt.Fprintln(tw, "\nVOLUME NAME\tLINKS\tSIZE")
			for _, v := range du.Volumes.Items {
				var links, size int64
				if v.UsageData != nil {
					links, size = v.UsageData.RefCount, v.UsageData.Size
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\n", v.Name, links, units.HumanSize(float64(size)))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "Show detailed information on space usage")
	return cmd
}

func shortImageID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	return id[:min(12, len(id))]
}

// newSystemPruneCommand is `berth system prune`: stopped containers, unused networks (when
// the daemon has networks), dangling (or with -a all unused) images and, with --volumes,
// unused volumes, as docker's.
func (c *cli) newSystemPruneCommand() *cobra.Command {
	var (
		all, force, volumes bool
		filters             []string
	)
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused data",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := parseFilterFlags(filters)
			if err != nil {
				return err
			}
			items := []string{"all stopped containers", "all networks not used by at least one container"}
			if volumes {
				items = append(items, "all anonymous volumes not used by at least one container")
			}
			if all {
				items = append(items, "all images without at least one container associated to them")
			} else {
				items = append(items, "all dangling images")
			}
			warning := "WARNING! This will remove:\n  - " + strings.Join(items, "\n  - ")
			if !force && !c.confirm(warning) {
				return errors.New("system prune has been cancelled")
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var reclaimed uint64
			cr, err := cl.ContainerPrune(ctx, client.ContainerPruneOptions{Filters: client.Filters(f).Clone()})
			if err != nil {
				return err
			}
			printPruned(c.out, "Deleted Containers:", cr.Report.ContainersDeleted)
			reclaimed += cr.Report.SpaceReclaimed
			nr, err := cl.NetworkPrune(ctx, client.NetworkPruneOptions{Filters: client.Filters(f).Clone()})
			switch {
			case err == nil:
				printPruned(c.out, "Deleted Networks:", nr.Report.NetworksDeleted)
			case errdefs.IsNotImplemented(err) || errdefs.IsNotFound(err):
				// This daemon has no network API yet: nothing to prune.
			default:
				return err
			}
			if volumes {
				vf := client.Filters(f).Clone()
				delete(vf, "until") // volumes have no until filter
				vr, err := cl.VolumePrune(ctx, client.VolumePruneOptions{Filters: vf})
				if err != nil {
					return err
				}
				printPruned(c.out, "Deleted Volumes:", vr.Report.VolumesDeleted)
				reclaimed += vr.Report.SpaceReclaimed
			}
			imf := client.Filters(f).Clone()
			if imf == nil {
				imf = client.Filters{}
			}
			if all {
				imf["dangling"] = map[string]bool{"false": true}
			}
			ir, err := cl.ImagePrune(ctx, client.ImagePruneOptions{Filters: imf})
			if err != nil {
				return err
			}
			if len(ir.Report.ImagesDeleted) > 0 {
				fmt.Fprintln(c.out, "Deleted Images:")
				for _, d := range ir.Report.ImagesDeleted {
					if d.Untagged != "" {
						fmt.Fprintf(c.out, "untagged: %s\n", d.Untagged)
					}
					if d.Deleted != "" {
						fmt.Fprintf(c.out, "deleted: %s\n", d.Deleted)
					}
				}
				fmt.Fprintln(c.out)
			}
			reclaimed += ir.Report.SpaceReclaimed
			fmt.Fprintf(c.out, "Total reclaimed space: %s\n", units.HumanSize(float64(reclaimed)))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&all, "all", "a", false, "Remove all unused images not just dangling ones")
	fl.BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	fl.BoolVar(&volumes, "volumes", false, "Prune anonymous volumes")
	listVarP(fl, &filters, "filter", "", nil, "Provide filter values (e.g. \"label=<key>=<value>\")")
	return cmd
}
