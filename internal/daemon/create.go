package daemon

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/fsutil"
	"github.com/containerd/errdefs"
	mcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// imageInfo is what a container needs of its image.
type imageInfo struct {
	ID      string
	ChainID string
	Config  mcontainer.Config
}

// resolveImage finds an image and its top layer's snapshot name (the chain ID of its diff IDs).
func (d *Daemon) resolveImage(ctx context.Context, ref string) (imageInfo, error) {
	ii, err := d.images.ImageInspect(ctx, ref)
	if err != nil {
		return imageInfo{}, err
	}
	info := imageInfo{ID: ii.ID}
	var chain digest.Digest
	for i, l := range ii.RootFS.Layers {
		if i == 0 {
			chain = digest.Digest(l)
		} else {
			chain = digest.FromString(chain.String() + " " + l)
		}
	}
	info.ChainID = chain.String()
	if c := ii.Config; c != nil {
		info.Config = mcontainer.Config{
			User:        c.User,
			Env:         c.Env,
			Cmd:         c.Cmd,
			Entrypoint:  c.Entrypoint,
			WorkingDir:  c.WorkingDir,
			Labels:      c.Labels,
			StopSignal:  c.StopSignal,
			Volumes:     c.Volumes,
			OnBuild:     c.OnBuild,
			Shell:       c.Shell,
			Healthcheck: c.Healthcheck,
		}
		if len(c.ExposedPorts) > 0 {
			info.Config.ExposedPorts = network.PortSet{}
			for p := range c.ExposedPorts {
				if pp, err := network.ParsePort(p); err == nil {
					info.Config.ExposedPorts[pp] = struct{}{}
				}
			}
		}
	}
	return info, nil
}

// mergeImageConfig fills what the user left unset from the image, as Docker does at create.
func mergeImageConfig(cfg *mcontainer.Config, img mcontainer.Config) {
	if cfg.User == "" {
		cfg.User = img.User
	}
	if len(cfg.Entrypoint) == 0 {
		cfg.Entrypoint = img.Entrypoint
		if len(cfg.Cmd) == 0 {
			cfg.Cmd = img.Cmd
		}
	}
	if cfg.WorkingDir == "" {
		cfg.WorkingDir = img.WorkingDir
	}
	// Image env first; a user value for the same key replaces it in place.
	env := slices.Clone(img.Env)
	for _, e := range cfg.Env {
		k, _, _ := strings.Cut(e, "=")
		replaced := false
		for i, ie := range env {
			if ik, _, _ := strings.Cut(ie, "="); ik == k {
				env[i] = e
				replaced = true
				break
			}
		}
		if !replaced {
			env = append(env, e)
		}
	}
	cfg.Env = env
	if len(img.Labels) > 0 {
		labels := maps.Clone(img.Labels)
		maps.Copy(labels, cfg.Labels)
		cfg.Labels = labels
	}
	if cfg.StopSignal == "" {
		cfg.StopSignal = img.StopSignal
	}
	if len(img.ExposedPorts) > 0 {
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = network.PortSet{}
		}
		maps.Copy(cfg.ExposedPorts, img.ExposedPorts)
	}
	if len(img.Volumes) > 0 {
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		maps.Copy(cfg.Volumes, img.Volumes)
	}
	if cfg.Healthcheck == nil {
		cfg.Healthcheck = img.Healthcheck
	}
	if len(cfg.Shell) == 0 {
		cfg.Shell = img.Shell
	}
}

// validateHostConfig rejects what berth cannot honour, with messages naming the flag.
func validateHostConfig(hc *mcontainer.HostConfig) error {
	if _, err := container.ParseSecurityOpts(hc.SecurityOpt); err != nil {
		return err
	}
	if _, err := container.Capabilities(hc.CapAdd, hc.CapDrop, hc.Privileged); err != nil {
		return err
	}
	if _, err := container.Rlimits(hc.Ulimits); err != nil {
		return err
	}
	if err := mcontainer.ValidateRestartPolicy(hc.RestartPolicy); err != nil {
		return fmt.Errorf("invalid --restart: %w", err)
	}
	if hc.AutoRemove && hc.RestartPolicy.Name != "" && hc.RestartPolicy.Name != mcontainer.RestartPolicyDisabled {
		return fmt.Errorf("conflicting options: cannot specify both --restart and --rm")
	}
	if hc.Memory != 0 && hc.Memory < 6<<20 {
		return fmt.Errorf("invalid --memory %d: minimum memory limit allowed is 6MB", hc.Memory)
	}
	if hc.MemorySwap > 0 && hc.Memory > 0 && hc.MemorySwap < hc.Memory {
		return fmt.Errorf("invalid --memory-swap: it must be larger than --memory (or -1 for unlimited swap)")
	}
	if hc.NanoCPUs != 0 && (hc.CPUQuota != 0 || hc.CPUPeriod != 0) {
		return fmt.Errorf("conflicting options: --cpus and --cpu-quota/--cpu-period cannot both be set")
	}
	if hc.NanoCPUs < 0 || hc.NanoCPUs > int64(numCPU())*1e9 {
		return fmt.Errorf("invalid --cpus: range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", numCPU(), numCPU())
	}
	if hc.ShmSize < 0 {
		return fmt.Errorf("invalid --shm-size: it must be positive")
	}
	if nm := string(hc.NetworkMode); strings.HasPrefix(nm, "container:") && (len(hc.PortBindings) > 0 || hc.PublishAllPorts) {
		return fmt.Errorf("conflicting options: port publishing and the container type network mode")
	}
	return nil
}

// ContainerCreate creates a container: its record, name, writable snapshot and its files.
func (d *Daemon) ContainerCreate(ctx context.Context, name string, cfg *mcontainer.Config, hc *mcontainer.HostConfig, nc *network.NetworkingConfig) (mcontainer.CreateResponse, error) {
	// A start usually follows (docker run). Moving its init into its cgroup will wait for an
	// RCU grace period (~8.5 ms here) unless a migration ran shortly before; one started now
	// has passed by then, and the start's own priming (launchShim) keeps the window open.
	d.primeCgroups()
	if cfg == nil {
		return mcontainer.CreateResponse{}, errdefs.ErrInvalidArgument.WithMessage("config cannot be empty in order to create a container")
	}
	if hc == nil {
		hc = &mcontainer.HostConfig{}
	}
	if cfg.Image == "" {
		return mcontainer.CreateResponse{}, errdefs.ErrInvalidArgument.WithMessage("no image specified")
	}
	if err := validateHostConfig(hc); err != nil {
		return mcontainer.CreateResponse{}, invalid(err)
	}
	img, err := d.resolveImage(ctx, cfg.Image)
	if err != nil {
		return mcontainer.CreateResponse{}, err
	}
	id := newID()
	if name == "" {
		name = d.randomName()
	} else if !validName(name) {
		return mcontainer.CreateResponse{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name))
	}
	if !strings.HasPrefix(name, "/") {
		name = "/" + name
	}
	cfg = clone(cfg)
	hc = clone(hc)
	mergeImageConfig(cfg, img.Config)
	if len(cfg.Entrypoint) == 0 && len(cfg.Cmd) == 0 {
		return mcontainer.CreateResponse{}, errdefs.ErrInvalidArgument.WithMessage("no command specified")
	}
	if hc.NetworkMode == "" || hc.NetworkMode == "default" {
		hc.NetworkMode = "bridge"
	}
	if cfg.Hostname == "" {
		cfg.Hostname = id[:12]
		// As Docker: a container on the host's network has the host's name.
		if hc.NetworkMode == "host" {
			if h, err := os.Hostname(); err == nil {
				cfg.Hostname = h
			}
		}
	}
	if hc.RestartPolicy.Name == "" {
		hc.RestartPolicy.Name = mcontainer.RestartPolicyDisabled
	}
	if hc.ShmSize == 0 {
		hc.ShmSize = container.DefaultShmSize
	}
	if err := d.ctrs.reserveName(name, id); err != nil {
		return mcontainer.CreateResponse{}, err
	}
	rec := ctrRecord{
		ID: id, Name: name, Created: time.Now().UTC(),
		Image: img.ID, ImageRef: cfg.Image, ChainID: img.ChainID,
		Config: cfg, HostConfig: hc,
		State: ctrState{Status: mcontainer.StateCreated},
	}
	// Undo in reverse on any failure, so a failed create leaves nothing.
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(d.ctrDir(id))
			d.net.Forget(id)
			_ = d.snap.Remove(context.WithoutCancel(ctx), snapKey(id))
			d.ctrs.releaseName(name, id)
		}
	}()
	if err := d.configureNetwork(id, name, cfg, hc, nc); err != nil {
		return mcontainer.CreateResponse{}, err
	}
	// The container's directory and /etc files are made on the other CPU while the snapshot
	// and the record are stored: each file made costs ~0.2 ms on some filesystems (ext4 without
	// a journal skips every recently freed inode), and the client is idle until the answer.
	// From here until filesErr, rec.Config and rec.HostConfig are only read.
	filesDone := make(chan error, 1)
	go func() {
		if err := d.makeCtrDir(id); err != nil {
			filesDone <- fmt.Errorf("create container directory: %w", err)
			return
		}
		filesDone <- d.writeEtcFiles(&rec, true)
	}()
	filesErr := func() error {
		if filesDone == nil {
			return nil
		}
		err := <-filesDone
		filesDone = nil
		return err
	}
	// Whatever fails, the files are done with before the undo removes their directory.
	defer func() { _ = filesErr() }()
	mps, releaseMounts, undoMounts, err := d.createMounts(ctx, cfg, hc)
	if err != nil {
		return mcontainer.CreateResponse{}, err
	}
	// The volumes stay pinned until the container is in the index (volumeUsers sees it).
	defer releaseMounts()
	defer func() {
		if !ok {
			undoMounts()
		}
	}()
	rec.Mounts = mps
	snap, err := d.storeNewCtr(&rec)
	if err != nil {
		return mcontainer.CreateResponse{}, err
	}
	if err := filesErr(); err != nil {
		// The record is stored: it goes with the snapshot, in one transaction.
		if rm, ferr := d.forgetCtr(id); ferr == nil {
			rm.Purge()
		}
		return mcontainer.CreateResponse{}, err
	}
	c := &ctr{rec: rec, mounts: snap.Mounts, exited: make(chan struct{}), removed: make(chan struct{})}
	d.startPremount(c)
	d.ctrs.add(c)
	ok = true
	d.events.Publish(events.ContainerEventType, events.ActionCreate, id, ctrAttrs(&rec))
	var warnings []string
	if hc.Memory > 0 && hc.MemorySwap == 0 {
		// Docker warns about swap accounting only when it is unsupported; nothing to say.
		warnings = nil
	}
	return mcontainer.CreateResponse{ID: id, Warnings: warnings}, nil
}

// snapKey names a container's writable snapshot.
func snapKey(id string) string { return "container-" + id }

func (d *Daemon) ctrDir(id string) string { return filepath.Join(d.cfg.Root, "containers", id) }

// ctrAttrs are the attributes Docker puts on container events.
func ctrAttrs(r *ctrRecord) map[string]string {
	a := map[string]string{"name": strings.TrimPrefix(r.Name, "/"), "image": r.ImageRef}
	if r.Config != nil {
		for k, v := range r.Config.Labels {
			a[k] = v
		}
	}
	return a
}

// etcFilesLost reports whether a host crash emptied (or removed) one of the container's
// generated /etc files.
func (d *Daemon) etcFilesLost(id string) bool {
	for _, n := range []string{"hostname", "hosts", "resolv.conf"} {
		fi, err := os.Stat(filepath.Join(d.ctrDir(id), n))
		if err != nil || fi.Size() == 0 {
			return true
		}
	}
	return false
}

// writeEtcFiles writes the container's /etc/hostname, /etc/hosts and /etc/resolv.conf. They
// derive from the record, so they are not fsynced (see etcFilesLost), as Docker does. For a
// container being created (fresh) they are written in place: nothing reads them yet, a write
// cut short leaves an empty file (which etcFilesLost catches) and a recycled directory's files
// are reused instead of replaced by new inodes (recycle.go). Otherwise they are replaced
// atomically.
func (d *Daemon) writeEtcFiles(r *ctrRecord, fresh bool) error {
	dir := d.ctrDir(r.ID)
	host := r.Config.Hostname
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
	if r.HostConfig.NetworkMode == "host" {
		if b, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts = string(b)
		}
	}
	for _, h := range r.HostConfig.ExtraHosts {
		name, ip, ok := strings.Cut(h, ":")
		if !ok {
			return invalid(fmt.Errorf("invalid --add-host %q: use HOST:IP", h))
		}
		hosts += ip + "\t" + name + "\n"
	}
	files := map[string]string{
		"hostname":    host + "\n",
		"hosts":       hosts,
		"resolv.conf": resolvConf(r.HostConfig),
	}
	for n, content := range files {
		write := fsutil.ReplaceFile
		if fresh {
			write = writeInPlace
		}
		if err := write(filepath.Join(dir, n), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeInPlace writes b to the file at path, truncating it first (made with perm if missing).
func writeInPlace(path string, b []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// resolvConf is the host's resolv.conf without loopback nameservers (unreachable from a
// container's own network namespace), with --dns and --dns-search applied.
func resolvConf(hc *mcontainer.HostConfig) string {
	var ns, search, opts []string
	if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) < 2 {
				continue
			}
			switch f[0] {
			case "nameserver":
				if hc.NetworkMode == "host" || !(strings.HasPrefix(f[1], "127.") || f[1] == "::1") {
					ns = append(ns, f[1])
				}
			case "search":
				search = f[1:]
			case "options":
				opts = append(opts, f[1:]...)
			}
		}
	}
	if len(hc.DNS) > 0 {
		ns = nil
		for _, a := range hc.DNS {
			ns = append(ns, a.String())
		}
	}
	if len(ns) == 0 {
		ns = []string{"8.8.8.8", "8.8.4.4"} // Docker's fallback
	}
	if len(hc.DNSSearch) > 0 {
		search = hc.DNSSearch
	}
	if len(hc.DNSOptions) > 0 {
		opts = hc.DNSOptions
	}
	var sb strings.Builder
	for _, n := range ns {
		sb.WriteString("nameserver " + n + "\n")
	}
	if len(search) > 0 {
		sb.WriteString("search " + strings.Join(search, " ") + "\n")
	}
	if len(opts) > 0 {
		sb.WriteString("options " + strings.Join(opts, " ") + "\n")
	}
	return sb.String()
}
