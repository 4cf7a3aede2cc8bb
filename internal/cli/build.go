package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-dev/berth/internal/build"
	mbuild "github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// newBuildCommand is `berth build`: it sends the context (a directory, filtered by its
// .dockerignore, or a tar or Dockerfile on stdin) to the daemon's classic builder and renders
// its progress.
func (c *cli) newBuildCommand() *cobra.Command {
	var (
		tags, buildArgs, labels []string
		file, target, iidFile   string
		network                 string
		noCache, quiet, rm, frm bool
	)
	cmd := &cobra.Command{
		Use:   "build [OPTIONS] PATH | -",
		Short: "Build an image from a Dockerfile",
		Args:  requiresRangeArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := client.ImageBuildOptions{
				Tags: tags, Dockerfile: file, Target: target, NoCache: noCache, SuppressOutput: quiet,
				Remove: rm, ForceRemove: frm, Version: mbuild.BuilderV1, NetworkMode: network,
				BuildArgs: map[string]*string{}, Labels: map[string]string{},
			}
			for _, a := range buildArgs {
				k, v, ok := strings.Cut(a, "=")
				if !ok {
					// As docker: a bare name takes its value from the environment, if set.
					if ev, set := os.LookupEnv(k); set {
						opts.BuildArgs[k] = &ev
					} else {
						opts.BuildArgs[k] = nil
					}
					continue
				}
				opts.BuildArgs[k] = &v
			}
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				opts.Labels[k] = v
			}
			body, err := c.buildContext(cmd.Context(), args[0], &opts)
			if err != nil {
				return err
			}
			defer body.Close()
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.ImageBuild(cmd.Context(), body, opts)
			if err != nil {
				return err
			}
			defer res.Body.Close()
			var id string
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			go func() { done <- c.displayStream(pr) }()
			id, err = copyCapturingID(pw, res.Body)
			pw.CloseWithError(err)
			if derr := <-done; derr != nil {
				return derr
			}
			if err != nil {
				return err
			}
			if iidFile != "" && id != "" {
				if err := os.WriteFile(iidFile, []byte(id), 0o644); err != nil {
					return fmt.Errorf("write image ID file: %w", err)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	listVarP(f, &tags, "tag", "t", nil, `Name and optionally a tag in the "name:tag" format`)
	f.StringVarP(&file, "file", "f", "", `Name of the Dockerfile (Default is "PATH/Dockerfile")`)
	f.StringVar(&target, "target", "", "Set the target build stage to build")
	f.BoolVar(&noCache, "no-cache", false, "Do not use cache when building the image")
	f.BoolVarP(&quiet, "quiet", "q", false, "Suppress the build output and print image ID on success")
	listVarP(f, &buildArgs, "build-arg", "", nil, "Set build-time variables")
	listVarP(f, &labels, "label", "", nil, "Set metadata for an image")
	f.BoolVar(&rm, "rm", true, "Remove intermediate containers after a successful build")
	f.BoolVar(&frm, "force-rm", false, "Always remove intermediate containers")
	f.StringVar(&iidFile, "iidfile", "", "Write the image ID to the file")
	f.StringVar(&network, "network", "default", "Set the networking mode for the RUN instructions during build")
	return cmd
}

// copyCapturingID copies the JSON stream and returns the image ID from its aux message.
func copyCapturingID(w io.Writer, r io.Reader) (string, error) {
	var id string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if i := strings.Index(string(line), `"aux":{"ID":"`); i >= 0 {
			rest := string(line[i+len(`"aux":{"ID":"`):])
			if j := strings.IndexByte(rest, '"'); j > 0 {
				id = rest[:j]
			}
		}
		if _, err := w.Write(append(line, '\n')); err != nil {
			return id, err
		}
	}
	return id, sc.Err()
}

// buildContext returns the request body: stdin as is for "-", else the directory as a tar
// without what .dockerignore excludes. A Dockerfile outside the context or on stdin (-f -) is
// added under a random name, as docker does.
func (c *cli) buildContext(ctx context.Context, path string, opts *client.ImageBuildOptions) (io.ReadCloser, error) {
	if path == "-" {
		if opts.Dockerfile == "-" {
			return nil, fmt.Errorf("invalid argument: can't use stdin for both build context and dockerfile")
		}
		return io.NopCloser(c.in), nil
	}
	dir, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("unable to prepare context: path %q not found", path)
	}
	extra := map[string][]byte{}
	switch df := opts.Dockerfile; {
	case df == "-":
		b, err := io.ReadAll(c.in)
		if err != nil {
			return nil, fmt.Errorf("read Dockerfile from stdin: %w", err)
		}
		opts.Dockerfile = randomDockerfileName()
		extra[opts.Dockerfile] = b
	case df != "":
		abs, err := filepath.Abs(df)
		if err != nil {
			return nil, err
		}
		if rel, err := filepath.Rel(dir, abs); err == nil && !strings.HasPrefix(rel, "..") {
			opts.Dockerfile = filepath.ToSlash(rel)
		} else {
			b, err := os.ReadFile(abs)
			if err != nil {
				return nil, fmt.Errorf("unable to prepare context: %w", err)
			}
			opts.Dockerfile = randomDockerfileName()
			extra[opts.Dockerfile] = b
		}
	}
	patterns, err := build.ReadDockerignore(dir)
	if err != nil {
		return nil, err
	}
	keep := []string{".dockerignore", "Dockerfile"}
	if opts.Dockerfile != "" {
		keep = append(keep, opts.Dockerfile)
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(build.WriteContext(ctx, pw, dir, patterns, extra, keep...))
	}()
	return pr, nil
}

func randomDockerfileName() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return ".dockerfile." + hex.EncodeToString(b)
}
