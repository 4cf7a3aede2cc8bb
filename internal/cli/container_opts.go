package cli

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/spf13/pflag"
)

// containerOpts are the flags of `run` and `create`, as docker's.
type containerOpts struct {
	name, hostname, workdir, user, entrypoint string
	env, envFile, labels, labelFiles          []string
	tty, interactive, readOnly, privileged    bool
	memory, memorySwap, memoryReservation     string
	shmSize                                   string
	cpus                                      float64
	cpuShares                                 int64
	cpuQuota, cpuPeriod                       int64
	cpusetCpus, cpusetMems                    string
	pidsLimit                                 int64
	blkioWeight                               uint16
	restart                                   string
	stopSignal                                string
	stopTimeout                               int
	tmpfs                                     []string
	capAdd, capDrop, securityOpt, ulimits     []string
	init                                      bool
	network                                   string
	dns, dnsSearch, dnsOption, addHost        []string
	groupAdd                                  []string
	pid, ipc, uts, cgroupns                   string
	sysctls                                   []string
	oomKillDisable                            bool
	oomScoreAdj                               int
	attach                                    []string
	detached                                  bool // run -d
	expose                                    []string
	// publish, publishAll, ip and aliases are -p, -P, --ip and --network-alias (network.go).
	publish, aliases []string
	publishAll       bool
	ip               string
	platform         string
	// volumes, mounts and volumesFrom are -v, --mount and --volumes-from (volume_opts.go).
	volumes, mounts, volumesFrom []string
}

func (o *containerOpts) addFlags(f *pflag.FlagSet) {
	// -h is --hostname here, as in docker; help is --help only.
	f.Bool("help", false, "Print usage")
	f.StringVar(&o.name, "name", "", "Assign a name to the container")
	f.StringVarP(&o.hostname, "hostname", "h", "", "Container host name")
	f.StringVarP(&o.workdir, "workdir", "w", "", "Working directory inside the container")
	f.StringVarP(&o.user, "user", "u", "", "Username or UID (format: <name|uid>[:<group|gid>])")
	f.StringVar(&o.entrypoint, "entrypoint", "", "Overwrite the default ENTRYPOINT of the image")
	listVarP(f, &o.env, "env", "e", nil, "Set environment variables")
	listVarP(f, &o.envFile, "env-file", "", nil, "Read in a file of environment variables")
	listVarP(f, &o.labels, "label", "l", nil, "Set meta data on a container")
	listVarP(f, &o.labelFiles, "label-file", "", nil, "Read in a line delimited file of labels")
	f.BoolVarP(&o.tty, "tty", "t", false, "Allocate a pseudo-TTY")
	f.BoolVarP(&o.interactive, "interactive", "i", false, "Keep STDIN open even if not attached")
	f.BoolVar(&o.readOnly, "read-only", false, "Mount the container's root filesystem as read only")
	f.BoolVar(&o.privileged, "privileged", false, "Give extended privileges to this container")
	f.StringVarP(&o.memory, "memory", "m", "", "Memory limit")
	f.StringVar(&o.memorySwap, "memory-swap", "", "Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
	f.StringVar(&o.memoryReservation, "memory-reservation", "", "Memory soft limit")
	f.StringVar(&o.shmSize, "shm-size", "", "Size of /dev/shm")
	f.Float64Var(&o.cpus, "cpus", 0, "Number of CPUs")
	f.Int64VarP(&o.cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight)")
	f.Int64Var(&o.cpuQuota, "cpu-quota", 0, "Limit CPU CFS (Completely Fair Scheduler) quota")
	f.Int64Var(&o.cpuPeriod, "cpu-period", 0, "Limit CPU CFS (Completely Fair Scheduler) period")
	f.StringVar(&o.cpusetCpus, "cpuset-cpus", "", "CPUs in which to allow execution (0-3, 0,1)")
	f.StringVar(&o.cpusetMems, "cpuset-mems", "", "MEMs in which to allow execution (0-3, 0,1)")
	f.Int64Var(&o.pidsLimit, "pids-limit", 0, "Tune container pids limit (set -1 for unlimited)")
	f.Uint16Var(&o.blkioWeight, "blkio-weight", 0, "Block IO (relative weight), between 10 and 1000, or 0 to disable")
	f.StringVar(&o.restart, "restart", "no", "Restart policy to apply when a container exits")
	f.StringVar(&o.stopSignal, "stop-signal", "", "Signal to stop the container")
	f.IntVar(&o.stopTimeout, "stop-timeout", 0, "Timeout (in seconds) to stop a container")
	listVarP(f, &o.tmpfs, "tmpfs", "", nil, "Mount a tmpfs directory")
	listVarP(f, &o.capAdd, "cap-add", "", nil, "Add Linux capabilities")
	listVarP(f, &o.capDrop, "cap-drop", "", nil, "Drop Linux capabilities")
	listVarP(f, &o.securityOpt, "security-opt", "", nil, "Security Options")
	listVarP(f, &o.ulimits, "ulimit", "", nil, "Ulimit options")
	f.BoolVar(&o.init, "init", false, "Run an init inside the container that forwards signals and reaps processes")
	f.StringVar(&o.network, "network", "", "Connect a container to a network")
	f.StringVar(&o.network, "net", "", "Connect a container to a network")
	_ = f.MarkHidden("net")
	listVarP(f, &o.dns, "dns", "", nil, "Set custom DNS servers")
	listVarP(f, &o.dnsSearch, "dns-search", "", nil, "Set custom DNS search domains")
	listVarP(f, &o.dnsOption, "dns-option", "", nil, "Set DNS options")
	listVarP(f, &o.addHost, "add-host", "", nil, "Add a custom host-to-IP mapping (host:ip)")
	listVarP(f, &o.groupAdd, "group-add", "", nil, "Add additional groups to join")
	f.StringVar(&o.pid, "pid", "", "PID namespace to use")
	f.StringVar(&o.ipc, "ipc", "", "IPC mode to use")
	f.StringVar(&o.uts, "uts", "", "UTS namespace to use")
	f.StringVar(&o.cgroupns, "cgroupns", "", `Cgroup namespace to use (host|private)`)
	listVarP(f, &o.sysctls, "sysctl", "", nil, "Sysctl options")
	f.BoolVar(&o.oomKillDisable, "oom-kill-disable", false, "Disable OOM Killer")
	f.IntVar(&o.oomScoreAdj, "oom-score-adj", 0, "Tune host's OOM preferences (-1000 to 1000)")
	listVarP(f, &o.attach, "attach", "a", nil, "Attach to STDIN, STDOUT or STDERR")
	listVarP(f, &o.expose, "expose", "", nil, "Expose a port or a range of ports")
	listVarP(f, &o.publish, "publish", "p", nil, "Publish a container's port(s) to the host")
	f.BoolVarP(&o.publishAll, "publish-all", "P", false, "Publish all exposed ports to random ports")
	f.StringVar(&o.ip, "ip", "", "IPv4 address (e.g., 172.30.100.104)")
	listVarP(f, &o.aliases, "network-alias", "", nil, "Add network-scoped alias for the container")
	f.StringVar(&o.platform, "platform", "", "Set platform if server is multi-platform capable")
	o.addVolumeFlags(f)
}

// parseSize accepts docker's sizes ("64m", "1g", "1024") for the named flag.
func parseSize(flag, v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	if v == "-1" {
		return -1, nil
	}
	n, err := units.RAMInBytes(v)
	if err != nil {
		return 0, fmt.Errorf("invalid argument %q for \"--%s\" flag: %w", v, flag, err)
	}
	return n, nil
}

// readKVFile reads docker's env/label files: KEY=VALUE lines; a bare KEY takes the value from
// the environment (env files only); blank lines and # comments are skipped.
func readKVFile(path string, fromEnv bool) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimLeft(sc.Text(), " \t")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, hasV := strings.Cut(line, "=")
		if k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("%s:%d: invalid line %q: use KEY=VALUE", path, n, line)
		}
		if !hasV && fromEnv {
			if v, ok := os.LookupEnv(k); ok {
				line = k + "=" + v
			} else {
				continue
			}
		}
		out = append(out, line)
	}
	return out, sc.Err()
}

// expandEnv resolves bare "KEY" entries of -e from the CLI's environment, as docker does.
func expandEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, e := range env {
		if !strings.Contains(e, "=") {
			if v, ok := os.LookupEnv(e); ok {
				out = append(out, e+"="+v)
			}
			continue
		}
		out = append(out, e)
	}
	return out
}

// parseRestart parses --restart: no, always, unless-stopped, on-failure[:N].
func parseRestart(v string) (container.RestartPolicy, error) {
	name, count, hasCount := strings.Cut(v, ":")
	p := container.RestartPolicy{Name: container.RestartPolicyMode(name)}
	switch p.Name {
	case "", container.RestartPolicyDisabled, container.RestartPolicyAlways, container.RestartPolicyUnlessStopped:
		if hasCount {
			return p, fmt.Errorf("invalid restart policy %q: maximum retry count can only be used with 'on-failure'", v)
		}
	case container.RestartPolicyOnFailure:
		if hasCount {
			n, err := strconv.Atoi(count)
			if err != nil || n < 0 {
				return p, fmt.Errorf("invalid restart policy %q: maximum retry count must be a non-negative integer", v)
			}
			p.MaximumRetryCount = n
		}
	default:
		return p, fmt.Errorf("invalid restart policy %q: use no, always, unless-stopped or on-failure[:max-retries]", v)
	}
	return p, nil
}

// toConfig turns flags, image and command into the API's create request.
func (o *containerOpts) toConfig(image string, cmd []string, flags *pflag.FlagSet) (*container.Config, *container.HostConfig, *network.NetworkingConfig, error) {
	env := expandEnv(o.env)
	for _, p := range o.envFile {
		kv, err := readKVFile(p, true)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--env-file: %w", err)
		}
		env = append(kv, env...)
	}
	labels := map[string]string{}
	for _, p := range o.labelFiles {
		kv, err := readKVFile(p, false)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--label-file: %w", err)
		}
		for _, l := range kv {
			k, v, _ := strings.Cut(l, "=")
			labels[k] = v
		}
	}
	for _, l := range o.labels {
		k, v, _ := strings.Cut(l, "=")
		labels[k] = v
	}
	cfg := &container.Config{
		Image:      image,
		Hostname:   o.hostname,
		User:       o.user,
		Env:        env,
		Cmd:        cmd,
		WorkingDir: o.workdir,
		Tty:        o.tty,
		OpenStdin:  o.interactive,
		Labels:     labels,
		StopSignal: o.stopSignal,
	}
	if o.hostname != "" {
		h, domain, _ := strings.Cut(o.hostname, ".")
		cfg.Hostname, cfg.Domainname = h, domain
	}
	if flags.Changed("entrypoint") {
		if o.entrypoint == "" {
			cfg.Entrypoint = []string{""}
		} else {
			cfg.Entrypoint = []string{o.entrypoint}
		}
	}
	if flags.Changed("stop-timeout") {
		t := o.stopTimeout
		cfg.StopTimeout = &t
	}
	if len(o.expose) > 0 {
		cfg.ExposedPorts = network.PortSet{}
		for _, e := range o.expose {
			if !strings.Contains(e, "/") {
				e += "/tcp"
			}
			p, err := network.ParsePort(e)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("invalid --expose %q: %w", e, err)
			}
			cfg.ExposedPorts[p] = struct{}{}
		}
	}
	// Which streams to attach: -a, or stdout+stderr (+stdin with -i) by default.
	if len(o.attach) > 0 {
		for _, a := range o.attach {
			switch strings.ToLower(a) {
			case "stdin":
				cfg.AttachStdin = true
			case "stdout":
				cfg.AttachStdout = true
			case "stderr":
				cfg.AttachStderr = true
			default:
				return nil, nil, nil, fmt.Errorf("invalid argument %q for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR", a)
			}
		}
	} else {
		cfg.AttachStdout, cfg.AttachStderr = true, true
		cfg.AttachStdin = o.interactive
	}
	if cfg.AttachStdin {
		cfg.StdinOnce = true
	}
	if o.detached { // run -d attaches nothing (docker)
		cfg.AttachStdin, cfg.AttachStdout, cfg.AttachStderr, cfg.StdinOnce = false, false, false, false
	}

	mem, err := parseSize("memory", o.memory)
	if err != nil {
		return nil, nil, nil, err
	}
	swap, err := parseSize("memory-swap", o.memorySwap)
	if err != nil {
		return nil, nil, nil, err
	}
	resv, err := parseSize("memory-reservation", o.memoryReservation)
	if err != nil {
		return nil, nil, nil, err
	}
	shm, err := parseSize("shm-size", o.shmSize)
	if err != nil {
		return nil, nil, nil, err
	}
	restart, err := parseRestart(o.restart)
	if err != nil {
		return nil, nil, nil, err
	}
	hc := &container.HostConfig{
		Privileged:     o.privileged,
		ReadonlyRootfs: o.readOnly,
		CapAdd:         o.capAdd,
		CapDrop:        o.capDrop,
		SecurityOpt:    o.securityOpt,
		RestartPolicy:  restart,
		ShmSize:        shm,
		NetworkMode:    container.NetworkMode(o.network),
		DNSSearch:      o.dnsSearch,
		DNSOptions:     o.dnsOption,
		ExtraHosts:     o.addHost,
		GroupAdd:       o.groupAdd,
		PidMode:        container.PidMode(o.pid),
		IpcMode:        container.IpcMode(o.ipc),
		UTSMode:        container.UTSMode(o.uts),
		CgroupnsMode:   container.CgroupnsMode(o.cgroupns),
		OomScoreAdj:    o.oomScoreAdj,
		Resources: container.Resources{
			Memory:            mem,
			MemorySwap:        swap,
			MemoryReservation: resv,
			NanoCPUs:          int64(o.cpus * 1e9),
			CPUShares:         o.cpuShares,
			CPUQuota:          o.cpuQuota,
			CPUPeriod:         o.cpuPeriod,
			CpusetCpus:        o.cpusetCpus,
			CpusetMems:        o.cpusetMems,
			BlkioWeight:       o.blkioWeight,
		},
	}
	if flags.Changed("init") {
		hc.Init = &o.init
	}
	if flags.Changed("oom-kill-disable") {
		hc.OomKillDisable = &o.oomKillDisable
	}
	if flags.Changed("pids-limit") {
		hc.PidsLimit = &o.pidsLimit
	}
	for _, d := range o.dns {
		a, err := parseAddr(d)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("invalid --dns %q: %w", d, err)
		}
		hc.DNS = append(hc.DNS, a)
	}
	for _, u := range o.ulimits {
		ul, err := units.ParseUlimit(u)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("invalid argument %q for \"--ulimit\" flag: %w", u, err)
		}
		hc.Ulimits = append(hc.Ulimits, ul)
	}
	if len(o.tmpfs) > 0 {
		hc.Tmpfs = map[string]string{}
		for _, t := range o.tmpfs {
			p, opts, _ := strings.Cut(t, ":")
			hc.Tmpfs[p] = opts
		}
	}
	if len(o.sysctls) > 0 {
		hc.Sysctls = map[string]string{}
		for _, s := range o.sysctls {
			k, v, ok := strings.Cut(s, "=")
			if !ok {
				return nil, nil, nil, fmt.Errorf("invalid --sysctl %q: use KEY=VALUE", s)
			}
			hc.Sysctls[k] = v
		}
	}
	for i, so := range hc.SecurityOpt {
		// docker sends a seccomp profile's content, not its path.
		if v, ok := strings.CutPrefix(so, "seccomp="); ok && v != "unconfined" && v != "builtin" {
			b, err := os.ReadFile(v)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("opening seccomp profile (%s) failed: %w", v, err)
			}
			hc.SecurityOpt[i] = "seccomp=" + string(b)
		}
	}
	if err := o.applyVolumes(cfg, hc); err != nil {
		return nil, nil, nil, err
	}
	if len(o.publish) > 0 {
		pm, ps, err := parsePublish(o.publish)
		if err != nil {
			return nil, nil, nil, err
		}
		hc.PortBindings = pm
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = network.PortSet{}
		}
		for p := range ps {
			cfg.ExposedPorts[p] = struct{}{}
		}
	}
	hc.PublishAllPorts = o.publishAll
	nc, err := o.networkingConfig(hc)
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, hc, nc, nil
}

// stopTimeoutFlag is -t/--timeout of stop and restart; nil when not given.
func stopTimeoutFlag(flags *pflag.FlagSet, v int) *int {
	if flags.Changed("time") || flags.Changed("timeout") {
		return &v
	}
	return nil
}

// parseTimeFilter accepts docker's --since/--until values: a duration ago, a unix timestamp or
// an RFC 3339 time.
func parseTimeFilter(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return strconv.FormatInt(time.Now().Add(-d).Unix(), 10), nil
	}
	if _, err := strconv.ParseFloat(v, 64); err == nil {
		return v, nil
	}
	for _, layout := range []string{time.RFC3339Nano, time.RFC3339, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return strconv.FormatInt(t.Unix(), 10), nil
		}
	}
	return "", fmt.Errorf("invalid time %q: use a duration (10m), a unix timestamp or an RFC 3339 date", v)
}

func parseAddr(s string) (netip.Addr, error) { return netip.ParseAddr(s) }
