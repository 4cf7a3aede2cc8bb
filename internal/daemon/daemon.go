// Package daemon is berth's composition root: it owns the metadata store, the snapshotter, the
// image service, the event bus and the API listeners, and wires them together. It holds the
// daemon's lifecycle (lock, start-up recovery, clean shutdown) and nothing that belongs to a
// single subsystem; the subsystems must not import it.
package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/berth-dev/berth/internal/cgroupfs"
	mcontainer "github.com/moby/moby/api/types/container"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/internal/api"
	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/fsutil"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/network"
	"github.com/berth-dev/berth/internal/runtime/linux"
	"github.com/berth-dev/berth/internal/snapshot/overlay"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/version"
	"github.com/berth-dev/berth/internal/volume"
	bolt "go.etcd.io/bbolt"
)

// Defaults match the paths documented in docs/architecture.md.
const (
	DefaultRoot     = "/var/lib/berth"
	DefaultExecRoot = "/run/berth"
	DefaultHost     = "unix:///run/berth/berth.sock"
	// DefaultCgroupParent is where container cgroups live, like Docker's /docker.
	DefaultCgroupParent = "/berth"
)

// TLSConfig names the files for a TCP listener. A TCP listener always requires client
// certificates signed by CACert (mutual TLS): the API is root-equivalent.
type TLSConfig struct {
	CACert, Cert, Key string
}

// Config is the daemon's configuration, from `berth daemon` flags.
type Config struct {
	Root     string
	ExecRoot string
	Hosts    []string
	TLS      TLSConfig
	Logger   *slog.Logger
	// Debug is reported in /info.
	Debug bool
	// CgroupParent is the cgroup under which containers' cgroups are made ("/berth").
	CgroupParent string
	// Binary is the berth executable started as each container's shim; empty means this
	// process's own executable.
	Binary string
	// Bridge names the default network's bridge ("berth0"); BridgePrefix starts the names of
	// user networks' bridges ("br-"); NFTable is berth's nftables table ("berth"). Tests set
	// them so that daemons running side by side do not share kernel objects.
	Bridge, BridgePrefix, NFTable string
	// InsecureRegistries are registries (host[:port] or CIDR) reached over plain HTTP, as
	// dockerd's --insecure-registry; localhost and 127.0.0.0/8 always are.
	InsecureRegistries []string
	// Hub is Docker Hub access: the --registry-mirror list (and the hub endpoint tests replace).
	Hub image.HubConfig
}

// Daemon is a running daemon. It is created by Run and lives until Run returns.
type Daemon struct {
	cfg    Config
	log    *slog.Logger
	db     *bolt.DB
	events *events.Bus
	images *image.Service
	snap   *overlay.Snapshotter
	ctrs   *ctrIndex
	execs  execIndex
	net    *network.Manager
	start  time.Time
	// ctx lives as long as the daemon serves; monitors and restarts stop with it, the
	// containers do not.
	ctx context.Context
	// volumes is the local volume store (volumes.go).
	volumes *volume.Store
	// shims are started shims waiting for a container (shimpool.go).
	shims *shimPool
	// host is the host's cgroup layout for the runtime, looked up once (linux.ProbeHost).
	host func() *linux.Host
	// premountTTL is how long a root filesystem mounted at create waits for its start
	// (premount.go).
	premountTTL time.Duration
	// lastPrime is when primeCgroups last started a migration (Unix nanoseconds).
	lastPrime atomic.Int64
	// spareDirs are emptied directories of removed containers, reused by create (recycle.go).
	spareDirs fsutil.Spares
	// bootID is the kernel's ID of this boot (mountRootfs); nil if it could not be read.
	bootID []byte
	// bg tracks work left for after a reply (the files of removed containers); the daemon
	// waits for it before it stops.
	bg background
}

// Run starts the daemon and serves the API until ctx is cancelled (SIGTERM), then shuts down
// cleanly: listeners stop accepting, in-flight requests get a grace period, the store closes.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Root == "" {
		cfg.Root = DefaultRoot
	}
	if cfg.ExecRoot == "" {
		cfg.ExecRoot = DefaultExecRoot
	}
	if len(cfg.Hosts) == 0 {
		cfg.Hosts = []string{DefaultHost}
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = DefaultCgroupParent
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var err error
	if cfg.Root, err = filepath.Abs(cfg.Root); err != nil {
		return fmt.Errorf("--root: %w", err)
	}
	if cfg.ExecRoot, err = filepath.Abs(cfg.ExecRoot); err != nil {
		return fmt.Errorf("--exec-root: %w", err)
	}
	// Validate listeners before touching any state, so a bad flag changes nothing.
	specs, err := parseHosts(cfg.Hosts, cfg.TLS)
	if err != nil {
		return err
	}
	for _, d := range []string{cfg.Root, cfg.ExecRoot} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	lock, err := lockRoot(cfg.Root)
	if err != nil {
		return err
	}
	defer lock.release()
	execRootOnTmpfs(cfg.ExecRoot, cfg.Logger)

	d, err := newDaemon(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.close()

	handler := api.New(api.Config{
		Images:     d.images,
		Volumes:    d,
		Commit:     d,
		Build:      d,
		DiskUsage:  d,
		Containers: d,
		System:     d,
		Networks:   d,
		Events:     d.events,
		Logger:     d.log,
		Version:    version.Version,
	})
	listeners, err := listen(specs)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, len(listeners))
	var wg sync.WaitGroup
	for _, l := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.log.Info("API listening", "addr", l.Addr().String())
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s: %w", l.Addr(), err)
			}
		}()
	}
	d.log.Info("berth daemon started", "version", version.Version, "root", cfg.Root, "exec-root", cfg.ExecRoot, "pid", os.Getpid())

	var runErr error
	select {
	case <-ctx.Done():
		d.log.Info("shutting down")
	case runErr = <-errc:
		d.log.Error("listener failed", "err", runErr)
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		// Streams such as /events and attach do not end by themselves; cut them.
		_ = srv.Close()
	}
	wg.Wait()
	d.bg.Wait()
	d.releaseHostState()
	for _, s := range specs {
		if s.network == "unix" {
			_ = os.Remove(s.address)
		}
	}
	d.log.Info("berth daemon stopped")
	return runErr
}

func newDaemon(ctx context.Context, cfg Config) (*Daemon, error) {
	db, err := store.Open(cfg.Root)
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: cfg.Logger, db: db, events: events.New(), start: time.Now(), ctrs: newCtrIndex(), ctx: ctx}
	d.shims = newShimPool(d)
	d.premountTTL = premountExpiry
	d.spareDirs.Max = maxSpareDirs
	d.host = sync.OnceValue(linux.ProbeHost)
	if d.bootID, err = readBootID(); err != nil {
		d.log.Warn("boot id", "err", err)
	}
	snap, err := overlay.New(cfg.Root, db)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open snapshotter: %w", err)
	}
	d.snap = snap
	d.images, err = image.New(ctx, image.Options{
		Root:        cfg.Root,
		DB:          db,
		Snapshotter: snap,
		Events:      d.events,
		Logger:      cfg.Logger.With("component", "image"),

		InsecureRegistries: cfg.InsecureRegistries,
		Hub:                cfg.Hub,
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open image store: %w", err)
	}
	d.images.SetInUse(d.inUse)
	if d.volumes, err = volume.New(cfg.Root, db, cfg.Logger.With("component", "volume")); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open volume store: %w", err)
	}
	d.volumes.SetInUse(d.volumeUsers)
	for _, dir := range []string{filepath.Join(cfg.Root, "containers"), filepath.Join(cfg.ExecRoot, "shims"), d.runtimeRoot()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	fsutil.SpreadSubdirs(filepath.Join(cfg.Root, "containers"))
	if err := d.openNetworks(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open networks: %w", err)
	}
	if err := d.restoreContainers(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("restore containers: %w", err)
	}
	if err := d.reconcileNetworks(); err != nil {
		d.log.Warn("reconcile networks", "err", err)
	}
	d.shims.refill()
	return d, nil
}

// releaseHostState removes what the daemon made on the host for containers (bridges, the
// nftables table, the parent cgroup) when no container still runs: running containers keep
// their networking across a daemon restart, but a daemon stopped with none leaves nothing.
func (d *Daemon) releaseHostState() {
	for _, c := range d.ctrs.all() {
		c.mu.Lock()
		live := c.running() || c.rec.State.Status == mcontainer.StateRestarting
		c.mu.Unlock()
		if live {
			d.log.Info("containers still run: keeping their networks and cgroups")
			return
		}
	}
	if d.net != nil {
		if err := d.net.Teardown(); err != nil {
			d.log.Warn("remove networking state", "err", err)
		}
	}
	cgroupfs.RemoveEmpty(d.cgroupParent())
}

func (d *Daemon) close() {
	d.bg.Wait()
	d.dropPremounts()
	d.shims.close()
	if d.net != nil {
		d.net.Close()
	}
	if err := d.db.Close(); err != nil {
		d.log.Warn("close metadata store", "err", err)
	}
}

// hostSpec is one parsed -H value.
type hostSpec struct {
	network, address string
	tls              *tls.Config
}

// parseHosts validates -H values. A TCP address without full mutual-TLS configuration is
// refused: anyone who reaches the API controls the host.
func parseHosts(hosts []string, tc TLSConfig) ([]hostSpec, error) {
	var specs []hostSpec
	for _, h := range hosts {
		u, err := url.Parse(h)
		if err != nil || u.Scheme == "" {
			return nil, fmt.Errorf("invalid -H/--host %q: use unix:///path/to.sock or tcp://host:port", h)
		}
		switch u.Scheme {
		case "unix":
			p := u.Path
			if p == "" {
				p = u.Opaque
			}
			if p == "" {
				return nil, fmt.Errorf("invalid -H/--host %q: unix socket path is empty", h)
			}
			specs = append(specs, hostSpec{network: "unix", address: p})
		case "tcp":
			if u.Host == "" {
				return nil, fmt.Errorf("invalid -H/--host %q: missing host:port", h)
			}
			if tc.CACert == "" || tc.Cert == "" || tc.Key == "" {
				return nil, fmt.Errorf("refusing to listen on %s without mutual TLS: pass --tlsverify --tlscacert CA.pem --tlscert server-cert.pem --tlskey server-key.pem (clients must present a certificate signed by the CA)", h)
			}
			cfg, err := serverTLS(tc)
			if err != nil {
				return nil, err
			}
			specs = append(specs, hostSpec{network: "tcp", address: u.Host, tls: cfg})
		default:
			return nil, fmt.Errorf("invalid -H/--host %q: scheme %q not supported (use unix:// or tcp://)", h, u.Scheme)
		}
	}
	return specs, nil
}

func serverTLS(tc TLSConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(tc.Cert, tc.Key)
	if err != nil {
		return nil, fmt.Errorf("load --tlscert/--tlskey: %w", err)
	}
	ca, err := os.ReadFile(tc.CACert)
	if err != nil {
		return nil, fmt.Errorf("read --tlscacert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("--tlscacert %s: no PEM certificates found", tc.CACert)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

func listen(specs []hostSpec) ([]net.Listener, error) {
	var ls []net.Listener
	fail := func(err error) ([]net.Listener, error) {
		for _, l := range ls {
			_ = l.Close()
		}
		return nil, err
	}
	for _, s := range specs {
		switch s.network {
		case "unix":
			l, err := listenUnix(s.address)
			if err != nil {
				return fail(err)
			}
			ls = append(ls, l)
		case "tcp":
			l, err := net.Listen("tcp", s.address)
			if err != nil {
				return fail(fmt.Errorf("listen on tcp://%s: %w", s.address, err))
			}
			ls = append(ls, tls.NewListener(l, s.tls))
		}
	}
	return ls, nil
}

// listenUnix binds the API socket with mode 0660 owned by root:root. A leftover socket file
// from a killed daemon is replaced; a live one (another daemon on another root) is refused.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		return nil, fmt.Errorf("socket %s is in use by another daemon: stop it or pass a different -H unix:///path", path)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	// Bind under a restrictive umask-equivalent: create, then chmod before anyone could use it
	// is racy, so bind in the (0711) directory and tighten at once; the directory itself keeps
	// non-root users from listing, and the final mode is 0660.
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on unix://%s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	if err := os.Chown(path, 0, 0); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("chown socket: %w", err)
	}
	return l, nil
}
