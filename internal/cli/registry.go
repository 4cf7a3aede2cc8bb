package cli

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/distribution/reference"
	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/credentials"
	"github.com/docker/cli/cli/config/types"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
	"github.com/moby/term"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

// dockerHubAuthKey is the key Docker stores Docker Hub credentials under.
const dockerHubAuthKey = "https://index.docker.io/v1/"

// configDir is where credentials live: $DOCKER_CONFIG (shared with docker) or ~/.berth, in the
// format of docker's config.json (auths, credsStore, credHelpers).
func configDir() string {
	if d := os.Getenv(config.EnvOverrideConfigDir); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".berth"
	}
	return filepath.Join(home, ".berth")
}

func loadConfigFile() (*configfile.ConfigFile, error) {
	return config.Load(configDir())
}

// authKey is the config key of a registry, as docker names it.
func authKey(server string) string {
	h := credentials.ConvertToHostname(strings.TrimSpace(server))
	switch h {
	case "", "docker.io", "index.docker.io", "registry-1.docker.io":
		return dockerHubAuthKey
	}
	return h
}

// encodeAuth is the X-Registry-Auth value for the credentials stored for server ("" if none).
func encodeAuth(cf *configfile.ConfigFile, server string) (string, error) {
	key := authKey(server)
	ac, err := cf.GetAuthConfig(key)
	if err != nil {
		return "", fmt.Errorf("read credentials for %s: %w", key, err)
	}
	if ac == (types.AuthConfig{}) || (ac.Username == "" && ac.Password == "" && ac.Auth == "" && ac.IdentityToken == "" && ac.RegistryToken == "") {
		return "", nil
	}
	b, err := json.Marshal(registry.AuthConfig{
		Username: ac.Username, Password: ac.Password, Auth: ac.Auth, ServerAddress: key,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken,
	})
	if err != nil {
		return "", err
	}
	return base64.URLEncoding.EncodeToString(b), nil
}

// registryAuthFor is the X-Registry-Auth value for an image reference's registry.
func registryAuthFor(ref string) (string, error) {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("invalid reference format: %s: %w", ref, err)
	}
	cf, err := loadConfigFile()
	if err != nil {
		return "", err
	}
	return encodeAuth(cf, reference.Domain(n))
}

// withDefaultTag adds :latest as docker does, saying so.
func (c *cli) withDefaultTag(ref string) (string, error) {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("invalid reference format: %s: %w", ref, err)
	}
	if reference.IsNameOnly(n) {
		fmt.Fprintln(c.out, "Using default tag: latest")
		n = reference.TagNameOnly(n)
	}
	return reference.FamiliarString(n), nil
}

// registryRef is the reference pull and push send, and the credentials for its registry.
func (c *cli) registryRef(arg string, all bool) (ref, auth string, err error) {
	if ref, err = c.refForTags(arg, all); err != nil {
		return "", "", err
	}
	if auth, err = registryAuthFor(ref); err != nil {
		return "", "", err
	}
	return ref, auth, nil
}

// refForTags is the reference pull and push send: with --all-tags the bare repository (a
// tag or digest is an error, as in docker), otherwise withDefaultTag's.
func (c *cli) refForTags(ref string, all bool) (string, error) {
	if !all {
		return c.withDefaultTag(ref)
	}
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("invalid reference format: %s: %w", ref, err)
	}
	if !reference.IsNameOnly(n) {
		return "", errors.New("tag can't be used with --all-tags/-a")
	}
	return reference.FamiliarName(n), nil
}

func (c *cli) newPullCommand(use string) *cobra.Command {
	var (
		platform string
		quiet    bool
		all      bool
	)
	cmd := &cobra.Command{
		Use:   use,
		Short: "Download an image from a registry",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, auth, err := c.registryRef(args[0], all)
			if err != nil {
				return err
			}
			opts := client.ImagePullOptions{RegistryAuth: auth, All: all}
			if platform != "" {
				p, err := parsePlatformFlag(platform)
				if err != nil {
					return err
				}
				opts.Platforms = []ocispec.Platform{p}
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			rc, err := cl.ImagePull(ctx, ref, opts)
			if err != nil {
				return err
			}
			defer rc.Close()
			if quiet {
				if err := drainStream(rc); err != nil {
					return err
				}
			} else if err := c.displayStream(rc); err != nil {
				return err
			}
			n, _ := reference.ParseNormalizedNamed(ref)
			fmt.Fprintln(c.out, n.String())
			return nil
		},
	}
	cmd.Flags().StringVar(&platform, "platform", "", "Set platform if server is multi-platform capable")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress verbose output")
	cmd.Flags().BoolVarP(&all, "all-tags", "a", false, "Download all tagged images in the repository")
	cmd.Flags().Bool("disable-content-trust", true, "Skip image verification (always)")
	return cmd
}

// parsePlatformFlag parses os[/arch[/variant]].
func parsePlatformFlag(s string) (ocispec.Platform, error) {
	parts := strings.Split(strings.ToLower(s), "/")
	if len(parts) > 3 || parts[0] == "" {
		return ocispec.Platform{}, fmt.Errorf("invalid platform %q: expected os[/arch[/variant]]", s)
	}
	p := ocispec.Platform{OS: parts[0]}
	if len(parts) > 1 {
		p.Architecture = parts[1]
	}
	if len(parts) > 2 {
		p.Variant = parts[2]
	}
	return p, nil
}

// drainStream reads a JSON message stream without showing it and returns its error, if any.
func drainStream(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return errors.New(m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
	}
}

func (c *cli) newPushCommand(use string) *cobra.Command {
	var quiet, all bool
	cmd := &cobra.Command{
		Use:   use,
		Short: "Upload an image to a registry",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, auth, err := c.registryRef(args[0], all)
			if err != nil {
				return err
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			rc, err := cl.ImagePush(ctx, ref, client.ImagePushOptions{RegistryAuth: auth, All: all})
			if err != nil {
				return err
			}
			defer rc.Close()
			if quiet {
				if err := drainStream(rc); err != nil {
					return err
				}
				n, _ := reference.ParseNormalizedNamed(ref)
				fmt.Fprintln(c.out, n.String())
				return nil
			}
			return c.displayStream(rc)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress verbose output")
	cmd.Flags().BoolVarP(&all, "all-tags", "a", false, "Push all tags of an image to the repository")
	cmd.Flags().Bool("disable-content-trust", true, "Skip image signing (always)")
	return cmd
}

func (c *cli) newLoginCommand() *cobra.Command {
	var (
		user, password string
		passwordStdin  bool
	)
	cmd := &cobra.Command{
		Use:   "login [OPTIONS] [SERVER]",
		Short: "Authenticate to a registry",
		Args:  requiresRangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := ""
			if len(args) == 1 {
				server = args[0]
			}
			key := authKey(server)
			if password != "" {
				fmt.Fprintln(c.err, "WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
				if passwordStdin {
					return errors.New("--password and --password-stdin are mutually exclusive")
				}
			}
			if passwordStdin {
				if user == "" {
					return errors.New("must provide --username with --password-stdin")
				}
				b, err := io.ReadAll(c.in)
				if err != nil {
					return err
				}
				password = strings.TrimRight(string(b), "\r\n")
			}
			if user == "" || password == "" {
				var err error
				if user, password, err = c.promptCredentials(key, user); err != nil {
					return err
				}
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.RegistryLogin(cmd.Context(), client.RegistryLoginOptions{Username: user, Password: password, ServerAddress: key})
			if err != nil {
				return err
			}
			cf, err := loadConfigFile()
			if err != nil {
				return err
			}
			ac := types.AuthConfig{Username: user, Password: password, ServerAddress: key}
			if res.Auth.IdentityToken != "" {
				ac.Password, ac.IdentityToken = "", res.Auth.IdentityToken
			}
			if err := cf.GetCredentialsStore(key).Store(ac); err != nil {
				return fmt.Errorf("error saving credentials: %w", err)
			}
			status := res.Auth.Status
			if status == "" {
				status = "Login Succeeded"
			}
			fmt.Fprintln(c.out, status)
			return nil
		},
	}
	cmd.Flags().StringVarP(&user, "username", "u", "", "Username")
	cmd.Flags().StringVarP(&password, "password", "p", "", "Password or Personal Access Token (PAT)")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "Take the Password or Personal Access Token (PAT) from stdin")
	return cmd
}

// promptCredentials asks for what is missing on the terminal, the password without echo.
func (c *cli) promptCredentials(key, user string) (string, string, error) {
	fd, tty := isTerminal(c.in)
	if !tty {
		return "", "", errors.New("cannot perform an interactive login from a non TTY device")
	}
	in := bufio.NewReader(c.in)
	if user == "" {
		fmt.Fprintf(c.out, "Username (for %s): ", key)
		line, err := in.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", "", err
		}
		if user = strings.TrimSpace(line); user == "" {
			return "", "", errors.New("error: username is required")
		}
	}
	state, err := term.SaveState(fd)
	if err != nil {
		return "", "", err
	}
	fmt.Fprint(c.out, "Password: ")
	if err := term.DisableEcho(fd, state); err != nil {
		return "", "", err
	}
	line, err := in.ReadString('\n')
	_ = term.RestoreTerminal(fd, state)
	fmt.Fprintln(c.out)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", "", err
	}
	password := strings.TrimRight(line, "\r\n")
	if password == "" {
		return "", "", errors.New("error: password is required")
	}
	return user, password, nil
}

func (c *cli) newLogoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout [SERVER]",
		Short: "Log out from a registry",
		Args:  requiresRangeArgs(0, 1),
		RunE: func(_ *cobra.Command, args []string) error {
			server := ""
			if len(args) == 1 {
				server = args[0]
			}
			key := authKey(server)
			cf, err := loadConfigFile()
			if err != nil {
				return err
			}
			if _, ok := cf.GetAuthConfigs()[key]; !ok && cf.CredentialsStore == "" && cf.CredentialHelpers[key] == "" {
				fmt.Fprintf(c.out, "Not logged in to %s\n", key)
				return nil
			}
			fmt.Fprintf(c.out, "Removing login credentials for %s\n", key)
			if err := cf.GetCredentialsStore(key).Erase(key); err != nil {
				fmt.Fprintf(c.err, "WARNING: could not erase credentials: %s: %v\n", key, err)
			}
			return nil
		},
	}
}
