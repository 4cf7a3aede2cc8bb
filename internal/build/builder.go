package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImageInfo is an image as the builder sees it.
type ImageInfo struct {
	ID    string
	Image dockerspec.DockerOCIImage
}

// RunRequest is one RUN step: a temporary container of Parent runs Args; on success its
// filesystem changes become the layer of a new image with config Image and history CreatedBy.
type RunRequest struct {
	Parent     string
	Image      dockerspec.DockerOCIImage
	CreatedBy  string
	Args       []string
	Env        []string
	User       string
	WorkingDir string
	// NetworkMode is the container's network ("" for the daemon's default).
	NetworkMode string
	// Output receives the command's stdout and stderr.
	Output io.Writer
	// Container is told the temporary container's ID when it is created, and removed=true once
	// it is gone, for the "Running in"/"Removing intermediate container" lines.
	Container func(id string, removed bool)
}

// Backend is what the builder needs of the daemon.
type Backend interface {
	// Image resolves a local image (the builder pulls nothing).
	Image(ctx context.Context, ref string) (ImageInfo, error)
	// Commit records a metadata-only step on parent ("" for scratch).
	Commit(ctx context.Context, parent string, img dockerspec.DockerOCIImage, createdBy string) (string, error)
	// Mutate mounts a writable root filesystem of parent ("" for scratch), calls fn on it, and
	// records its changes as the layer of a new image.
	Mutate(ctx context.Context, parent string, img dockerspec.DockerOCIImage, createdBy string, fn func(rootfs string) error) (string, error)
	// View mounts the root filesystem of an image read-only for the duration of fn.
	View(ctx context.Context, imageID string, fn func(rootfs string) error) error
	// Run runs a RUN step.
	Run(ctx context.Context, req RunRequest) (string, error)
	// Tag names an image (a normalized repo:tag).
	Tag(ctx context.Context, imageID, ref string) error
}

// Cache maps step cache keys to image IDs.
type Cache interface {
	Get(key string) (string, bool)
	Put(key, imageID string) error
}

// Options are the parameters of one build.
type Options struct {
	// ContextDir is the unpacked build context (PrepareContext). The builder reads it and
	// applies its .dockerignore.
	ContextDir string
	// Dockerfile is the Dockerfile's path inside the context ("Dockerfile" if empty).
	Dockerfile string
	Tags       []string
	Target     string
	NoCache    bool
	BuildArgs  map[string]*string
	Labels     map[string]string
	// NetworkMode is the network of RUN containers ("" for the daemon's default).
	NetworkMode string
	// Quiet suppresses the step output; only the final image ID is written.
	Quiet bool
	// Out receives Docker's classic progress text.
	Out io.Writer
}

// Result is a finished build.
type Result struct {
	ID   string
	Tags []string // the normalized names, as reported
}

// predefinedArgs may be passed with --build-arg without an ARG; like Docker, they reach RUN
// steps but stay out of the history and the cache key.
var predefinedArgs = []string{
	"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
	"NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
}

// Builder runs builds.
type Builder struct {
	backend Backend
	cache   Cache
}

// New returns a builder over a backend and a cache (nil: no cache).
func New(b Backend, c Cache) *Builder { return &Builder{backend: b, cache: c} }

// stageState is the state of the stage being built.
type stageState struct {
	id     string // current image ID; "" before any layer on scratch
	img    dockerspec.DockerOCIImage
	args   map[string]*string // ARGs declared in this stage
	cmdSet bool               // CMD set in this stage (so ENTRYPOINT does not reset it)
	shell  []string
	lex    *shell.Lex
}

// build is one build in progress.
type build struct {
	*Builder
	opts     Options
	out      io.Writer
	step     int
	total    int
	stages   []string // stage results by index
	names    map[string]int
	usedArgs map[string]bool
	metaArgs map[string]*string
	escape   rune
}

// Build runs a build and returns the final image.
func (b *Builder) Build(ctx context.Context, o Options) (Result, error) {
	tags, err := normalizeTags(o.Tags)
	if err != nil {
		return Result{}, err
	}
	dfName := o.Dockerfile
	if dfName == "" {
		dfName = "Dockerfile"
	}
	f, err := openContextFile(o.ContextDir, dfName)
	if err != nil {
		return Result{}, err
	}
	df, err := ParseDockerfile(f)
	f.Close()
	if err != nil {
		return Result{}, err
	}
	patterns, err := ReadDockerignore(o.ContextDir)
	if err != nil {
		return Result{}, err
	}
	if err := ApplyDockerignore(o.ContextDir, patterns); err != nil {
		return Result{}, fmt.Errorf("apply .dockerignore: %w", err)
	}
	last := len(df.Stages) - 1
	if o.Target != "" {
		last = -1
		for i, s := range df.Stages {
			if strings.EqualFold(s.Name, o.Target) {
				last = i
			}
		}
		if last < 0 {
			return Result{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("failed to reach build target %s in Dockerfile", o.Target))
		}
	}
	bd := &build{Builder: b, opts: o, out: o.Out, names: map[string]int{}, usedArgs: map[string]bool{}, metaArgs: map[string]*string{}, escape: df.Escape}
	if o.Quiet || bd.out == nil {
		bd.out = io.Discard
	}
	for i := 0; i <= last; i++ {
		bd.total += 1 + len(df.Stages[i].Commands)
	}
	if len(o.Labels) > 0 {
		bd.total++
	}
	// Meta ARGs (before the first FROM) serve the FROM lines, and are the defaults of a
	// stage's redeclared ARG.
	lex := shell.NewLex(df.Escape)
	for _, a := range df.MetaArgs {
		for _, kv := range a.Args {
			v := kv.Value
			if v != nil {
				s, _, err := lex.ProcessWord(*v, shell.EnvsFromSlice(bd.metaEnv()))
				if err != nil {
					return Result{}, invalid(err)
				}
				v = &s
			}
			if ov, ok := o.BuildArgs[kv.Key]; ok && ov != nil {
				v = ov
			}
			bd.metaArgs[kv.Key] = v
			bd.usedArgs[kv.Key] = true
		}
	}
	for i := 0; i <= last; i++ {
		id, err := bd.buildStage(ctx, df.Stages[i], i == last)
		if err != nil {
			return Result{}, err
		}
		bd.stages = append(bd.stages, id)
		if n := df.Stages[i].Name; n != "" {
			bd.names[strings.ToLower(n)] = i
		}
	}
	final := bd.stages[last]
	var unused []string
	for _, k := range sortedKeys(o.BuildArgs) {
		if !bd.usedArgs[k] && !slices.Contains(predefinedArgs, k) {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		fmt.Fprintf(bd.out, "[Warning] One or more build-args %v were not consumed\n", unused)
	}
	fmt.Fprintf(bd.out, "Successfully built %s\n", shortID(final))
	for _, t := range tags {
		if err := b.backend.Tag(ctx, final, t); err != nil {
			return Result{}, err
		}
		fmt.Fprintf(bd.out, "Successfully tagged %s\n", t)
	}
	if o.Quiet && o.Out != nil {
		fmt.Fprintf(o.Out, "%s\n", final)
	}
	return Result{ID: final, Tags: tags}, nil
}

func invalid(err error) error {
	return errdefs.ErrInvalidArgument.WithMessage(err.Error())
}

func normalizeTags(tags []string) ([]string, error) {
	var out []string
	for _, t := range tags {
		n, err := reference.ParseNormalizedNamed(t)
		if err != nil {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid tag %q: %v", t, err))
		}
		if _, ok := n.(reference.Digested); ok {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid tag %q: a tag cannot contain a digest", t))
		}
		out = append(out, reference.FamiliarString(reference.TagNameOnly(n)))
	}
	return out, nil
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func (bd *build) metaEnv() []string {
	var env []string
	for _, k := range sortedKeys(bd.metaArgs) {
		if v := bd.metaArgs[k]; v != nil {
			env = append(env, k+"="+*v)
		}
	}
	return env
}

func (bd *build) stepf(cmd string) {
	bd.step++
	fmt.Fprintf(bd.out, "Step %d/%d : %s\n", bd.step, bd.total, cmd)
}

// buildStage runs one stage and returns its image.
func (bd *build) buildStage(ctx context.Context, st instructions.Stage, isFinal bool) (string, error) {
	bd.stepf(st.SourceCode)
	lex := shell.NewLex(bd.escape)
	base, _, err := lex.ProcessWord(st.BaseName, shell.EnvsFromSlice(bd.metaEnv()))
	if err != nil {
		return "", invalid(fmt.Errorf("FROM %s: %w", st.BaseName, err))
	}
	s := &stageState{args: map[string]*string{}, lex: lex, shell: []string{"/bin/sh", "-c"}}
	switch {
	case strings.EqualFold(base, "scratch"):
		s.img = dockerspec.DockerOCIImage{Image: ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}}}
		s.img.Config.Env = nil
		fmt.Fprintf(bd.out, " ---> %s\n", "scratch")
	default:
		ref := base
		if i, ok := bd.stageIndex(base); ok {
			ref = bd.stages[i]
		}
		info, err := bd.backend.Image(ctx, ref)
		if err != nil {
			return "", fmt.Errorf("FROM %s: %w", base, err)
		}
		s.id, s.img = info.ID, info.Image
		if len(s.img.Config.Shell) > 0 {
			s.shell = slices.Clone(s.img.Config.Shell)
		}
		fmt.Fprintf(bd.out, " ---> %s\n", shortID(s.id))
	}
	if triggers := s.img.Config.OnBuild; len(triggers) > 0 {
		s.img.Config.OnBuild = nil
		fmt.Fprintf(bd.out, "# Executing %d build trigger", len(triggers))
		if len(triggers) > 1 {
			fmt.Fprint(bd.out, "s")
		}
		fmt.Fprintln(bd.out)
		for _, t := range triggers {
			cmd, err := parseLine(t)
			if err != nil {
				return "", err
			}
			if err := bd.dispatch(ctx, s, cmd, true); err != nil {
				return "", err
			}
		}
	}
	for _, cmd := range st.Commands {
		bd.stepf(instrText(cmd))
		if err := bd.dispatch(ctx, s, cmd, false); err != nil {
			return "", err
		}
	}
	if isFinal && len(bd.opts.Labels) > 0 {
		var parts []string
		for _, k := range sortedKeys(bd.opts.Labels) {
			parts = append(parts, strconv.Quote(k)+"="+strconv.Quote(bd.opts.Labels[k]))
		}
		bd.stepf("LABEL " + strings.Join(parts, " "))
		if s.img.Config.Labels == nil {
			s.img.Config.Labels = map[string]string{}
		}
		maps.Copy(s.img.Config.Labels, bd.opts.Labels)
		if err := bd.commitMeta(ctx, s, "LABEL "+strings.Join(parts, " ")); err != nil {
			return "", err
		}
	}
	if s.id == "" {
		// A stage of only FROM scratch: record an image for it anyway.
		if err := bd.commitMeta(ctx, s, "FROM scratch"); err != nil {
			return "", err
		}
	}
	return s.id, nil
}

func (bd *build) stageIndex(name string) (int, bool) {
	if i, ok := bd.names[strings.ToLower(name)]; ok {
		return i, true
	}
	if n, err := strconv.Atoi(name); err == nil && n >= 0 && n < len(bd.stages) {
		return n, true
	}
	return 0, false
}

// env is what variables expand against: the stage's ARGs, overridden by its ENV.
func (s *stageState) env() []string {
	m := map[string]string{}
	for k, v := range s.args {
		if v != nil {
			m[k] = *v
		}
	}
	for _, e := range s.img.Config.Env {
		k, v, _ := strings.Cut(e, "=")
		m[k] = v
	}
	out := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, k+"="+m[k])
	}
	return out
}

// argsInEffect are the stage's ARGs with values that ENV does not shadow, as "k=v" sorted: they
// go into RUN's environment, its history line and so its cache key.
func (s *stageState) argsInEffect() []string {
	var out []string
	for _, k := range sortedKeys(s.args) {
		v := s.args[k]
		if v == nil || hasEnv(s.img.Config.Env, k) {
			continue
		}
		out = append(out, k+"="+*v)
	}
	return out
}

func hasEnv(env []string, k string) bool {
	for _, e := range env {
		if ek, _, _ := strings.Cut(e, "="); ek == k {
			return true
		}
	}
	return false
}

func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if ek, _, _ := strings.Cut(e, "="); ek == k {
			env = slices.Clone(env)
			env[i] = k + "=" + v
			return env
		}
	}
	return append(slices.Clone(env), k+"="+v)
}

// nop is the history line of a metadata step, as the classic builder writes it.
func (s *stageState) nop(instr string) string {
	return strings.Join(s.shell, " ") + " #(nop) " + instr
}

// cacheKey identifies a step: the parent image, the history line (the expanded instruction, with
// build args for RUN and file checksums for COPY/ADD) and the resulting run config.
func cacheKey(parent, createdBy string, cfg dockerspec.DockerOCIImageConfig, extra string) string {
	b, _ := json.Marshal(struct {
		Parent, CreatedBy, Extra string
		Config                   dockerspec.DockerOCIImageConfig
	}{parent, createdBy, extra, cfg})
	sum := sha256.Sum256(b)
	return "v1:" + hex.EncodeToString(sum[:])
}

// cached looks a step up; it reports the image and switches the stage to it on a hit.
func (bd *build) cached(ctx context.Context, s *stageState, key string) bool {
	if bd.cache == nil || bd.opts.NoCache {
		return false
	}
	id, ok := bd.cache.Get(key)
	if !ok {
		return false
	}
	info, err := bd.backend.Image(ctx, id)
	if err != nil {
		return false // the cached image was removed
	}
	s.id, s.img = info.ID, info.Image
	fmt.Fprintf(bd.out, " ---> Using cache\n ---> %s\n", shortID(s.id))
	return true
}

// remember switches the stage to the image a step committed (its config carries the new
// history and rootfs) and records it in the cache.
func (bd *build) remember(ctx context.Context, s *stageState, key, id string) error {
	info, err := bd.backend.Image(ctx, id)
	if err != nil {
		return err
	}
	s.id, s.img = info.ID, info.Image
	if bd.cache != nil {
		if err := bd.cache.Put(key, id); err != nil {
			return fmt.Errorf("record build cache: %w", err)
		}
	}
	fmt.Fprintf(bd.out, " ---> %s\n", shortID(id))
	return nil
}

// commitMeta commits a metadata-only step with the stage's current config.
func (bd *build) commitMeta(ctx context.Context, s *stageState, instr string) error {
	createdBy := s.nop(instr)
	key := cacheKey(s.id, createdBy, s.img.Config, "")
	if bd.cached(ctx, s, key) {
		return nil
	}
	id, err := bd.backend.Commit(ctx, s.id, s.img, createdBy)
	if err != nil {
		return err
	}
	return bd.remember(ctx, s, key, id)
}

// dispatch runs one instruction.
func (bd *build) dispatch(ctx context.Context, s *stageState, cmd instructions.Command, trigger bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
		env := shell.EnvsFromSlice(s.env())
		err := ex.Expand(func(w string) (string, error) {
			r, _, err := s.lex.ProcessWord(w, env)
			return r, err
		})
		if err != nil {
			return invalid(fmt.Errorf("%s: %w", cmd.Name(), err))
		}
	}
	cfg := &s.img.Config
	switch c := cmd.(type) {
	case *instructions.EnvCommand:
		var parts []string
		for _, kv := range c.Env {
			cfg.Env = setEnv(cfg.Env, kv.Key, kv.Value)
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		return bd.commitMeta(ctx, s, "ENV "+strings.Join(parts, " "))
	case *instructions.MaintainerCommand:
		s.img.Author = c.Maintainer
		return bd.commitMeta(ctx, s, "MAINTAINER "+c.Maintainer)
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		var parts []string
		for _, kv := range c.Labels {
			cfg.Labels[kv.Key] = kv.Value
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		return bd.commitMeta(ctx, s, "LABEL "+strings.Join(parts, " "))
	case *instructions.WorkdirCommand:
		wd := c.Path
		if !path.IsAbs(wd) {
			base := cfg.WorkingDir
			if base == "" {
				base = "/"
			}
			wd = path.Join(base, wd)
		}
		cfg.WorkingDir = path.Clean(wd)
		return bd.commitMeta(ctx, s, "WORKDIR "+cfg.WorkingDir)
	case *instructions.UserCommand:
		cfg.User = c.User
		return bd.commitMeta(ctx, s, "USER "+c.User)
	case *instructions.ExposeCommand:
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		var ports []string
		for _, p := range c.Ports {
			for _, w := range strings.Fields(p) {
				w, err := normalizePort(w, s)
				if err != nil {
					return err
				}
				cfg.ExposedPorts[w] = struct{}{}
				ports = append(ports, w)
			}
		}
		return bd.commitMeta(ctx, s, "EXPOSE "+strings.Join(ports, " "))
	case *instructions.VolumeCommand:
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			if v = strings.TrimSpace(v); v == "" {
				return errdefs.ErrInvalidArgument.WithMessage("VOLUME specified can not be an empty string")
			}
			cfg.Volumes[v] = struct{}{}
		}
		return bd.commitMeta(ctx, s, "VOLUME "+jsonList(c.Volumes))
	case *instructions.StopSignalCommand:
		cfg.StopSignal = c.Signal
		return bd.commitMeta(ctx, s, "STOPSIGNAL "+c.Signal)
	case *instructions.ShellCommand:
		cfg.Shell = slices.Clone(c.Shell)
		s.shell = slices.Clone(c.Shell)
		return bd.commitMeta(ctx, s, "SHELL "+jsonList(c.Shell))
	case *instructions.CmdCommand:
		cfg.Cmd = s.cmdLine(c.ShellDependantCmdLine)
		s.cmdSet = true
		return bd.commitMeta(ctx, s, " CMD "+jsonList(cfg.Cmd))
	case *instructions.EntrypointCommand:
		cfg.Entrypoint = s.cmdLine(c.ShellDependantCmdLine)
		if !s.cmdSet {
			cfg.Cmd = nil
		}
		return bd.commitMeta(ctx, s, " ENTRYPOINT "+jsonList(cfg.Entrypoint))
	case *instructions.HealthCheckCommand:
		cfg.Healthcheck = c.Health
		return bd.commitMeta(ctx, s, "HEALTHCHECK "+healthString(c.Health))
	case *instructions.OnbuildCommand:
		expr := strings.TrimSpace(c.Expression)
		cfg.OnBuild = append(slices.Clone(cfg.OnBuild), expr)
		return bd.commitMeta(ctx, s, "ONBUILD "+expr)
	case *instructions.ArgCommand:
		var parts []string
		for _, kv := range c.Args {
			v := kv.Value
			if mv, ok := bd.metaArgs[kv.Key]; ok && v == nil {
				v = mv
			}
			if ov, ok := bd.opts.BuildArgs[kv.Key]; ok && ov != nil {
				v = ov
			}
			s.args[kv.Key] = v
			bd.usedArgs[kv.Key] = true
			parts = append(parts, kv.String())
		}
		return bd.commitMeta(ctx, s, "ARG "+strings.Join(parts, " "))
	case *instructions.RunCommand:
		return bd.run(ctx, s, c)
	case *instructions.CopyCommand:
		if c.Parents || len(c.ExcludePatterns) > 0 {
			return errdefs.ErrNotImplemented.WithMessage("COPY --parents and --exclude require BuildKit")
		}
		return bd.copy(ctx, s, "COPY", c.SourcesAndDest, c.From, c.Chown, c.Chmod, false)
	case *instructions.AddCommand:
		if c.Checksum != "" || len(c.ExcludePatterns) > 0 || c.KeepGitDir != nil {
			return errdefs.ErrNotImplemented.WithMessage("ADD --checksum, --exclude and --keep-git-dir require BuildKit")
		}
		return bd.copy(ctx, s, "ADD", c.SourcesAndDest, "", c.Chown, c.Chmod, c.Unpack == nil || *c.Unpack)
	default:
		return errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("%s is not supported by the classic builder", strings.ToUpper(cmd.Name())))
	}
}

func normalizePort(p string, _ *stageState) (string, error) {
	num, proto, _ := strings.Cut(p, "/")
	if proto == "" {
		proto = "tcp"
	}
	lo, hi, isRange := strings.Cut(num, "-")
	for _, n := range []string{lo, hi} {
		if !isRange && n == hi {
			continue
		}
		if v, err := strconv.Atoi(n); err != nil || v < 0 || v > 65535 {
			return "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid port %q", p))
		}
	}
	switch strings.ToLower(proto) {
	case "tcp", "udp", "sctp":
	default:
		return "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid protocol in port %q", p))
	}
	return num + "/" + strings.ToLower(proto), nil
}

func jsonList(l []string) string {
	b, _ := json.Marshal(l)
	return string(b)
}

func healthString(h *dockerspec.HealthcheckConfig) string {
	if h == nil {
		return "NONE"
	}
	b, _ := json.Marshal(h)
	return string(b)
}

// cmdLine turns a shell-form command into [shell..., "cmd"], an exec-form one as is.
func (s *stageState) cmdLine(c instructions.ShellDependantCmdLine) []string {
	if c.PrependShell {
		return append(slices.Clone(s.shell), strings.Join(c.CmdLine, " "))
	}
	return slices.Clone(c.CmdLine)
}

func (bd *build) run(ctx context.Context, s *stageState, c *instructions.RunCommand) error {
	if len(c.FlagsUsed) > 0 {
		return errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("RUN --%s requires BuildKit", c.FlagsUsed[0]))
	}
	if len(c.Files) > 0 {
		return errdefs.ErrNotImplemented.WithMessage("heredocs require BuildKit")
	}
	if s.id == "" {
		return errdefs.ErrInvalidArgument.WithMessage("cannot RUN on an empty (scratch) image: no command to run")
	}
	args := s.cmdLine(c.ShellDependantCmdLine)
	createdBy := strings.Join(args, " ")
	eff := s.argsInEffect()
	if len(eff) > 0 {
		createdBy = fmt.Sprintf("|%d %s %s", len(eff), strings.Join(eff, " "), createdBy)
	}
	key := cacheKey(s.id, createdBy, s.img.Config, "")
	if bd.cached(ctx, s, key) {
		return nil
	}
	env := slices.Clone(s.img.Config.Env)
	env = append(env, eff...)
	for _, k := range predefinedArgs {
		if v, ok := bd.opts.BuildArgs[k]; ok && v != nil && !hasEnv(env, k) {
			env = append(env, k+"="+*v)
		}
	}
	id, err := bd.backend.Run(ctx, RunRequest{
		Parent: s.id, Image: s.img, CreatedBy: createdBy, Args: args, Env: env,
		User: s.img.Config.User, WorkingDir: s.img.Config.WorkingDir, Output: bd.out, NetworkMode: bd.opts.NetworkMode,
		Container: func(id string, removed bool) {
			if removed {
				fmt.Fprintf(bd.out, "Removing intermediate container %s\n", shortID(id))
			} else {
				fmt.Fprintf(bd.out, " ---> Running in %s\n", shortID(id))
			}
		},
	})
	if err != nil {
		var ee *ExitError
		if errors.As(err, &ee) {
			//lint:ignore ST1005 Docker's exact message, which scripts match
			return fmt.Errorf("The command '%s' returned a non-zero code: %d", strings.Join(args, " "), ee.Code)
		}
		return err
	}
	return bd.remember(ctx, s, key, id)
}

// ExitError is what a backend's Run returns when the command fails.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit code %d", e.Code) }

func (bd *build) copy(ctx context.Context, s *stageState, name string, sd instructions.SourcesAndDest, from, chown, chmod string, add bool) error {
	if len(sd.SourceContents) > 0 {
		return errdefs.ErrNotImplemented.WithMessage("heredocs require BuildKit")
	}
	mode, err := parseChmod(chmod)
	if err != nil {
		return err
	}
	do := func(root string) error {
		srcs, err := resolveSources(root, sd.SourcePaths)
		if err != nil {
			return fmt.Errorf("%s failed: %w", name, err)
		}
		if len(srcs) == 0 {
			return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("%s failed: no source files were specified", name))
		}
		sum, err := checksum(srcs)
		if err != nil {
			return fmt.Errorf("%s failed: %w", name, err)
		}
		createdBy := s.nop(fmt.Sprintf("%s %s in %s ", name, sum, sd.DestPath))
		extra := fmt.Sprintf("from=%s chown=%s chmod=%s workdir=%s", from, chown, chmod, s.img.Config.WorkingDir)
		key := cacheKey(s.id, createdBy, s.img.Config, extra)
		if bd.cached(ctx, s, key) {
			return nil
		}
		id, err := bd.backend.Mutate(ctx, s.id, s.img, createdBy, func(rootfs string) error {
			return copyInto(ctx, rootfs, copyRequest{srcs: srcs, dest: sd.DestPath, workdir: s.img.Config.WorkingDir, chown: chown, chmod: mode, add: add})
		})
		if err != nil {
			return fmt.Errorf("%s failed: %w", name, err)
		}
		return bd.remember(ctx, s, key, id)
	}
	if from == "" {
		return do(bd.opts.ContextDir)
	}
	ref := from
	if i, ok := bd.stageIndex(from); ok {
		ref = bd.stages[i]
	}
	info, err := bd.backend.Image(ctx, ref)
	if err != nil {
		return fmt.Errorf("%s --from=%s: %w", name, from, err)
	}
	return bd.backend.View(ctx, info.ID, do)
}

// instrText is the instruction as written, for the "Step n/m" line.
func instrText(cmd instructions.Command) string {
	if s, ok := cmd.(fmt.Stringer); ok {
		return s.String()
	}
	return strings.ToUpper(cmd.Name())
}
