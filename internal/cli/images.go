package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/containerd/errdefs"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/go-units"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/jsonmessage"
	"github.com/spf13/cobra"
)

func (c *cli) newImageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage images",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	ls := c.newImagesCommand("ls [OPTIONS] [REPOSITORY[:TAG]]")
	ls.Aliases = []string{"list"}
	rm := c.newRmiCommand("rm [OPTIONS] IMAGE [IMAGE...]")
	rm.Aliases = []string{"remove", "rmi"}
	cmd.AddCommand(
		ls,
		c.newImageInspectCommand(),
		rm,
		c.newTagCommand("tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]"),
		c.newSaveCommand("save [OPTIONS] IMAGE [IMAGE...]"),
		c.newLoadCommand("load [OPTIONS]"),
		c.newImportCommand("import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]"),
		c.newHistoryCommand("history [OPTIONS] IMAGE"),
		c.newImagePruneCommand(),
		c.newPullCommand("pull [OPTIONS] NAME[:TAG|@DIGEST]"),
		c.newPushCommand("push [OPTIONS] NAME[:TAG]"),
	)
	return cmd
}

func (c *cli) newImagesCommand(use string) *cobra.Command {
	var (
		all, quiet, digests, noTrunc bool
		filters                      []string
		format                       string
	)
	cmd := &cobra.Command{
		Use:   use,
		Short: "List images",
		Args:  requiresRangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFilterFlags(filters)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				if f["reference"] == nil {
					f["reference"] = map[string]bool{}
				}
				f["reference"][args[0]] = true
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.ImageList(cmd.Context(), client.ImageListOptions{All: all, Filters: client.Filters(f)})
			if err != nil {
				return err
			}
			if format == "" || format == "table" {
				format = defaultImageFormat
				if digests {
					format = defaultImageDigestsFormat
				}
			}
			if quiet {
				format = "{{.ID}}"
			}
			rows := imageRows(res.Items, !noTrunc, time.Now())
			anyRows := make([]any, len(rows))
			for i, r := range rows {
				anyRows[i] = r
			}
			return listFormat{format: format, headers: imageHeaders}.write(c.out, anyRows)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&all, "all", "a", false, "Show all images (default hides intermediate images)")
	fl.BoolVarP(&quiet, "quiet", "q", false, "Only show image IDs")
	fl.BoolVar(&digests, "digests", false, "Show digests")
	fl.BoolVar(&noTrunc, "no-trunc", false, "Don't truncate output")
	listVarP(fl, &filters, "filter", "f", nil, "Filter output based on conditions provided")
	fl.StringVar(&format, "format", "", "Format output using a custom template:\n'table':            Print output in table format with column headers (default)\n'table TEMPLATE':   Print output in table format using the given Go template\n'json':             Print in JSON format\n'TEMPLATE':         Print output using the given Go template")
	return cmd
}

func (c *cli) newImageInspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] IMAGE [IMAGE...]",
		Short: "Display detailed information on one or more images",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.inspectObjects(cmd, args, format, "image", false)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	return cmd
}

func (c *cli) newInspectCommand() *cobra.Command {
	var format, typ string
	var size bool
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] NAME|ID [NAME|ID...]",
		Short: "Return low-level information on berth objects",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch typ {
			case "", "image", "container":
				return c.inspectObjects(cmd, args, format, typ, size)
			default:
				return fmt.Errorf("%q is not a valid value for --type (use container or image)", typ)
			}
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	cmd.Flags().StringVar(&typ, "type", "", "Only inspect objects of the given type")
	cmd.Flags().BoolVarP(&size, "size", "s", false, "Display total file sizes if the type is container")
	return cmd
}

// inspectObjects prints the raw JSON of each object (an indented array) or a template per
// object, and fails when any is missing, after printing the others, as docker does. typ ""
// tries a container first, then an image.
func (c *cli) inspectObjects(cmd *cobra.Command, refs []string, format, typ string, size bool) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	var tmpl interface {
		Execute(io.Writer, any) error
	}
	if format != "" && format != "json" {
		t, err := parseTemplate(format)
		if err != nil {
			return err
		}
		tmpl = t
	}
	var (
		raws []json.RawMessage
		errs []string
		out  bytes.Buffer
	)
	for _, ref := range refs {
		var raw bytes.Buffer
		found := false
		if typ == "" || typ == "container" {
			res, err := cl.ContainerInspect(cmd.Context(), ref, client.ContainerInspectOptions{Size: size})
			switch {
			case err == nil:
				raw.Write(res.Raw)
				found = true
			case client.IsErrConnectionFailed(err):
				return err
			case typ == "container" || !(errdefs.IsNotFound(err) || errdefs.IsNotImplemented(err)):
				errs = append(errs, c.userError(err))
				continue
			}
		}
		if !found {
			if _, err := cl.ImageInspect(cmd.Context(), ref, client.ImageInspectWithRawResponse(&raw)); err != nil {
				if client.IsErrConnectionFailed(err) {
					return err
				}
				if typ == "" && errdefs.IsNotFound(err) {
					errs = append(errs, "Error: No such object: "+ref)
				} else {
					errs = append(errs, c.userError(err))
				}
				continue
			}
		}
		if tmpl == nil {
			raws = append(raws, json.RawMessage(bytes.TrimSpace(raw.Bytes())))
			continue
		}
		dec := json.NewDecoder(&raw)
		dec.UseNumber() // keep sizes as integers in templates
		var v map[string]any
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("decoding the inspect response of %s: %w", ref, err)
		}
		if err := tmpl.Execute(&out, v); err != nil {
			return fmt.Errorf("template: %w", err)
		}
		out.WriteByte('\n')
	}
	if tmpl == nil {
		if raws == nil {
			raws = []json.RawMessage{}
		}
		b, err := json.MarshalIndent(raws, "", "    ")
		if err != nil {
			return err
		}
		out.Write(b)
		out.WriteByte('\n')
	}
	if _, err := c.out.Write(out.Bytes()); err != nil {
		return err
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

func (c *cli) newRmiCommand(use string) *cobra.Command {
	var force, noPrune bool
	cmd := &cobra.Command{
		Use:   use,
		Short: "Remove one or more images",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			var errs []string
			for _, ref := range args {
				res, err := cl.ImageRemove(cmd.Context(), ref, client.ImageRemoveOptions{Force: force, PruneChildren: !noPrune})
				if err != nil {
					if client.IsErrConnectionFailed(err) {
						return err
					}
					errs = append(errs, c.userError(err))
					continue
				}
				for _, d := range res.Items {
					if d.Untagged != "" {
						fmt.Fprintf(c.out, "Untagged: %s\n", d.Untagged)
					}
					if d.Deleted != "" {
						fmt.Fprintf(c.out, "Deleted: %s\n", d.Deleted)
					}
				}
			}
			if len(errs) > 0 {
				return errors.New(strings.Join(errs, "\n"))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force removal of the image")
	cmd.Flags().BoolVar(&noPrune, "no-prune", false, "Do not delete untagged parents")
	return cmd
}

func (c *cli) newTagCommand(use string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			_, err = cl.ImageTag(cmd.Context(), client.ImageTagOptions{Source: args[0], Target: args[1]})
			return err
		},
	}
}

func (c *cli) newSaveCommand(use string) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   use,
		Short: "Save one or more images to a tar archive (streamed to STDOUT by default)",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output == "" {
				if _, tty := isTerminal(c.out); tty {
					return errors.New("cowardly refusing to save to a terminal. Use the -o flag or redirect")
				}
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			rc, err := cl.ImageSave(ctx, args)
			if err != nil {
				return err
			}
			defer rc.Close()
			if output == "" {
				_, err := io.Copy(c.out, rc)
				return err
			}
			return writeFileAtomic(output, rc)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Write to a file, instead of STDOUT")
	return cmd
}

// writeFileAtomic writes r to path through a temporary file in the same directory, so that a
// failed save leaves no partial archive behind.
func writeFileAtomic(path string, r io.Reader) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("failed to save image: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		return fmt.Errorf("failed to save image: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("failed to save image: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("failed to save image: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("failed to save image: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("failed to save image: %w", err)
	}
	return nil
}

// displayStream renders a JSON message stream: updating progress lines on a terminal, plain
// lines otherwise. It returns the first error message of the stream.
func (c *cli) displayStream(r io.Reader) error {
	fd, tty := isTerminal(c.out)
	return jsonmessage.DisplayJSONMessagesStream(r, c.out, fd, tty, nil)
}

func (c *cli) newLoadCommand(use string) *cobra.Command {
	var (
		input string
		quiet bool
	)
	cmd := &cobra.Command{
		Use:   use,
		Short: "Load an image from a tar archive or STDIN",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var in io.Reader = c.in
			if input != "" {
				f, err := os.Open(input)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			} else if _, tty := isTerminal(c.in); tty {
				return errors.New("requested load from stdin, but stdin is empty")
			}
			if _, tty := isTerminal(c.out); !tty {
				quiet = true
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			rc, err := cl.ImageLoad(cmd.Context(), in, client.ImageLoadWithQuiet(quiet))
			if err != nil {
				return err
			}
			defer rc.Close()
			return c.displayStream(rc)
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "Read from tar archive file, instead of STDIN")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress the load output")
	return cmd
}

func (c *cli) newImportCommand(use string) *cobra.Command {
	var (
		changes []string
		message string
	)
	cmd := &cobra.Command{
		Use:   use,
		Short: "Import the contents from a tarball to create a filesystem image",
		Args:  requiresRangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			source := client.ImageImportSource{SourceName: args[0]}
			switch {
			case args[0] == "-":
				source.Source = c.in
			case strings.Contains(args[0], "://"):
				// The daemon decides whether it can fetch URLs.
			default:
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				source = client.ImageImportSource{Source: f, SourceName: "-"}
			}
			ref := ""
			if len(args) == 2 {
				ref = args[1]
				if _, err := reference.ParseNormalizedNamed(ref); err != nil {
					return fmt.Errorf("invalid reference format: %s: %w", ref, err)
				}
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			rc, err := cl.ImageImport(cmd.Context(), source, ref, client.ImageImportOptions{Changes: changes, Message: message})
			if err != nil {
				return err
			}
			defer rc.Close()
			return c.displayStream(rc)
		},
	}
	listVarP(cmd.Flags(), &changes, "change", "c", nil, "Apply Dockerfile instruction to the created image")
	cmd.Flags().StringVarP(&message, "message", "m", "", "Set commit message for imported image")
	cmd.Flags().String("platform", "", "Set platform if server is multi-platform capable (ignored: berth is single-platform)")
	return cmd
}

func (c *cli) newHistoryCommand(use string) *cobra.Command {
	var (
		human, quiet, noTrunc bool
		format                string
	)
	cmd := &cobra.Command{
		Use:   use,
		Short: "Show the history of an image",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.ImageHistory(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if format == "" || format == "table" {
				format = defaultHistoryFormat
			}
			if quiet {
				format = "{{.ID}}"
			}
			now := time.Now()
			rows := make([]any, len(res.Items))
			for i, h := range res.Items {
				rows[i] = historyRow{h: h, trunc: !noTrunc, human: human, now: now}
			}
			return listFormat{format: format, headers: historyHeaders}.write(c.out, rows)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&human, "human", "H", true, "Print sizes and dates in human readable format")
	fl.BoolVarP(&quiet, "quiet", "q", false, "Only show image IDs")
	fl.BoolVar(&noTrunc, "no-trunc", false, "Don't truncate output")
	fl.StringVar(&format, "format", "", "Format output using a custom template ('table', 'table TEMPLATE', 'json' or 'TEMPLATE')")
	return cmd
}

func (c *cli) newImagePruneCommand() *cobra.Command {
	var (
		all, force bool
		filters    []string
	)
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused images",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := parseFilterFlags(filters)
			if err != nil {
				return err
			}
			warning := "WARNING! This will remove all dangling images."
			if all {
				warning = "WARNING! This will remove all images without at least one container associated to them."
				f["dangling"] = map[string]bool{"false": true}
			}
			if !force && !c.confirm(warning) {
				return errors.New("image prune has been cancelled")
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.ImagePrune(cmd.Context(), client.ImagePruneOptions{Filters: client.Filters(f)})
			if err != nil {
				return err
			}
			if len(res.Report.ImagesDeleted) > 0 {
				fmt.Fprintln(c.out, "Deleted Images:")
				for _, d := range res.Report.ImagesDeleted {
					if d.Untagged != "" {
						fmt.Fprintf(c.out, "untagged: %s\n", d.Untagged)
					}
					if d.Deleted != "" {
						fmt.Fprintf(c.out, "deleted: %s\n", d.Deleted)
					}
				}
				fmt.Fprintln(c.out)
			}
			fmt.Fprintf(c.out, "Total reclaimed space: %s\n", units.HumanSize(float64(res.Report.SpaceReclaimed)))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "Remove all unused images, not just dangling ones")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	listVarP(cmd.Flags(), &filters, "filter", "", nil, "Provide filter values (e.g. \"until=<timestamp>\")")
	return cmd
}

// confirm asks the user a yes/no question on stdin; anything but y/yes is no.
func (c *cli) confirm(warning string) bool {
	fmt.Fprintf(c.out, "%s\nAre you sure you want to continue? [y/N] ", warning)
	line, _ := bufio.NewReader(c.in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}
