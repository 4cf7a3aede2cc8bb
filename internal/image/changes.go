package image

import (
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// applyChanges applies Dockerfile instructions given as `docker import --change` / commit
// changes to cfg. The accepted instructions are Docker's: CMD, ENTRYPOINT, ENV, EXPOSE,
// HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR. Variables are not expanded.
func applyChanges(cfg *dockerspec.DockerOCIImageConfig, changes []string) error {
	cmdSet := false
	for _, c := range changes {
		for _, line := range strings.Split(c, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if err := applyChange(cfg, line, &cmdSet); err != nil {
				return errInvalid("invalid change %q: %v", line, err)
			}
		}
	}
	return nil
}

func cutSpace(s string) (string, string) {
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

func applyChange(cfg *dockerspec.DockerOCIImageConfig, line string, cmdSet *bool) error {
	word, rest := cutSpace(line)
	instr := strings.ToUpper(word)
	switch instr {
	case "CMD":
		args, err := parseCommand(instr, rest)
		if err != nil {
			return err
		}
		cfg.Cmd = args
		*cmdSet = true
	case "ENTRYPOINT":
		args, err := parseCommand(instr, rest)
		if err != nil {
			return err
		}
		cfg.Entrypoint = args
		// As in a Dockerfile, a new ENTRYPOINT resets an inherited CMD.
		if !*cmdSet {
			cfg.Cmd = nil
		}
	case "ENV":
		kvs, err := parseKeyValues(instr, rest)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			cfg.Env = setEnv(cfg.Env, kv[0], kv[1])
		}
	case "LABEL":
		kvs, err := parseKeyValues(instr, rest)
		if err != nil {
			return err
		}
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for _, kv := range kvs {
			cfg.Labels[kv[0]] = kv[1]
		}
	case "EXPOSE":
		ports := strings.Fields(rest)
		if len(ports) == 0 {
			return fmt.Errorf("EXPOSE requires at least one argument")
		}
		for _, p := range ports {
			list, err := parsePorts(p)
			if err != nil {
				return err
			}
			if cfg.ExposedPorts == nil {
				cfg.ExposedPorts = map[string]struct{}{}
			}
			for _, e := range list {
				cfg.ExposedPorts[e] = struct{}{}
			}
		}
	case "USER":
		if rest == "" || strings.ContainsFunc(rest, unicode.IsSpace) {
			return fmt.Errorf("USER requires exactly one argument")
		}
		cfg.User = rest
	case "VOLUME":
		vols, err := parseList(rest)
		if err != nil {
			return err
		}
		if len(vols) == 0 {
			return fmt.Errorf("VOLUME requires at least one argument")
		}
		for _, v := range vols {
			if strings.TrimSpace(v) == "" {
				return fmt.Errorf("VOLUME specified can not be an empty string")
			}
			if cfg.Volumes == nil {
				cfg.Volumes = map[string]struct{}{}
			}
			cfg.Volumes[v] = struct{}{}
		}
	case "WORKDIR":
		if rest == "" {
			return fmt.Errorf("WORKDIR requires exactly one argument")
		}
		if !path.IsAbs(rest) {
			rest = path.Join("/", cfg.WorkingDir, rest)
		}
		cfg.WorkingDir = path.Clean(rest)
	case "STOPSIGNAL":
		if err := validSignal(rest); err != nil {
			return err
		}
		cfg.StopSignal = rest
	case "ONBUILD":
		tw, trest := cutSpace(rest)
		switch t := strings.ToUpper(tw); t {
		case "":
			return fmt.Errorf("ONBUILD requires at least one argument")
		case "ONBUILD", "FROM", "MAINTAINER":
			return fmt.Errorf("%s isn't allowed as an ONBUILD trigger", t)
		default:
			cfg.OnBuild = append(cfg.OnBuild, strings.TrimSpace(t+" "+trest))
		}
	case "HEALTHCHECK":
		hc, err := parseHealthcheck(rest)
		if err != nil {
			return err
		}
		cfg.Healthcheck = hc
	default:
		return fmt.Errorf("%s is not a valid change command", word)
	}
	return nil
}

// parseCommand accepts the exec form (a JSON array of strings) or the shell form.
func parseCommand(instr, rest string) ([]string, error) {
	if list, ok := parseJSONList(rest); ok {
		return list, nil
	}
	if rest == "" {
		return nil, fmt.Errorf("%s requires at least one argument", instr)
	}
	return []string{"/bin/sh", "-c", rest}, nil
}

func parseJSONList(s string) ([]string, bool) {
	if !strings.HasPrefix(s, "[") {
		return nil, false
	}
	var list []string
	if err := json.Unmarshal([]byte(s), &list); err != nil {
		return nil, false
	}
	if list == nil {
		list = []string{}
	}
	return list, true
}

// parseList is VOLUME's argument: a JSON array or whitespace-separated words.
func parseList(s string) ([]string, error) {
	if list, ok := parseJSONList(s); ok {
		return list, nil
	}
	return splitWords(s)
}

// parseKeyValues parses `k=v k2="v 2"` or the legacy `k value with spaces` form.
func parseKeyValues(instr, rest string) ([][2]string, error) {
	words, err := splitWords(rest)
	if err != nil {
		return nil, err
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("%s requires at least one argument", instr)
	}
	first, _ := cutSpace(rest)
	if !strings.Contains(first, "=") {
		key, val := cutSpace(rest)
		if val == "" {
			return nil, fmt.Errorf("%s %s requires a value (use %s %s=)", instr, key, instr, key)
		}
		return [][2]string{{key, val}}, nil
	}
	var out [][2]string
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return nil, fmt.Errorf("can't find = in %q; must be of the form: name=value", w)
		}
		if k == "" {
			return nil, fmt.Errorf("%s names can not be blank", instr)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

// splitWords splits s on unquoted whitespace, removing quotes: "..." (with \ escapes) and
// '...' (literal); outside quotes a backslash escapes the next character.
func splitWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool
	)
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case unicode.IsSpace(c):
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '\\':
			in = true
			if i+1 < len(rs) {
				i++
				cur.WriteRune(rs[i])
			}
		case c == '\'':
			in = true
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			if j >= len(rs) {
				return nil, fmt.Errorf("unterminated single quote")
			}
			cur.WriteString(string(rs[i+1 : j]))
			i = j
		case c == '"':
			in = true
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				if rs[j] == '\\' && j+1 < len(rs) && (rs[j+1] == '"' || rs[j+1] == '\\' || rs[j+1] == '$') {
					j++
				}
				cur.WriteRune(rs[j])
			}
			if j >= len(rs) {
				return nil, fmt.Errorf("unterminated double quote")
			}
			i = j
		default:
			in = true
			cur.WriteRune(c)
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if ek, _, _ := strings.Cut(e, "="); ek == k {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

// parsePorts parses an EXPOSE argument: port[-port][/proto], proto tcp (default), udp or sctp.
func parsePorts(s string) ([]string, error) {
	spec, proto, ok := strings.Cut(s, "/")
	if !ok {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return nil, fmt.Errorf("invalid proto %q in %q", proto, s)
	}
	lo, hi, isRange := strings.Cut(spec, "-")
	start, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("invalid port %q", s)
	}
	end := start
	if isRange {
		if end, err = strconv.ParseUint(hi, 10, 16); err != nil || end < start {
			return nil, fmt.Errorf("invalid port range %q", s)
		}
	}
	var out []string
	for p := start; p <= end; p++ {
		out = append(out, fmt.Sprintf("%d/%s", p, proto))
	}
	return out, nil
}

// validSignal accepts what Docker's signal.ParseSignal does on Linux: a number, or a name with
// or without the SIG prefix (SIGTERM, TERM, SIGRTMIN+3).
func validSignal(s string) error {
	if s == "" {
		return fmt.Errorf("STOPSIGNAL requires exactly one argument")
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return fmt.Errorf("invalid signal: %s", s)
		}
		return nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if unix.SignalNum(name) != 0 {
		return nil
	}
	for _, base := range []string{"SIGRTMIN", "SIGRTMAX"} {
		if off, ok := strings.CutPrefix(name, base); ok {
			if off == "" {
				return nil
			}
			if n, err := strconv.Atoi(off); err == nil && n >= -15 && n <= 15 {
				return nil
			}
		}
	}
	return fmt.Errorf("invalid signal: %s", s)
}

// parseHealthcheck parses HEALTHCHECK NONE or HEALTHCHECK [--opt=v ...] CMD command.
func parseHealthcheck(rest string) (*dockerspec.HealthcheckConfig, error) {
	if strings.EqualFold(strings.TrimSpace(rest), "NONE") {
		return &dockerspec.HealthcheckConfig{Test: []string{"NONE"}}, nil
	}
	hc := &dockerspec.HealthcheckConfig{}
	for strings.HasPrefix(rest, "--") {
		var opt string
		opt, rest = cutSpace(rest)
		k, v, ok := strings.Cut(strings.TrimPrefix(opt, "--"), "=")
		if !ok {
			return nil, fmt.Errorf("HEALTHCHECK option %q needs a value", opt)
		}
		if k == "retries" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("HEALTHCHECK --retries must be a non-negative integer")
			}
			hc.Retries = n
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("HEALTHCHECK --%s: invalid duration %q", k, v)
		}
		switch k {
		case "interval":
			hc.Interval = d
		case "timeout":
			hc.Timeout = d
		case "start-period":
			hc.StartPeriod = d
		case "start-interval":
			hc.StartInterval = d
		default:
			return nil, fmt.Errorf("unknown HEALTHCHECK option --%s", k)
		}
	}
	word, cmd := cutSpace(rest)
	if !strings.EqualFold(word, "CMD") {
		return nil, fmt.Errorf("HEALTHCHECK requires NONE or CMD")
	}
	if list, ok := parseJSONList(cmd); ok {
		return withTest(hc, append([]string{"CMD"}, list...)), nil
	}
	if cmd == "" {
		return nil, fmt.Errorf("HEALTHCHECK CMD requires a command")
	}
	return withTest(hc, []string{"CMD-SHELL", cmd}), nil
}

func withTest(hc *dockerspec.HealthcheckConfig, t []string) *dockerspec.HealthcheckConfig {
	hc.Test = t
	return hc
}
