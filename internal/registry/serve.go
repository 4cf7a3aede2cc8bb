package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"
)

// shutdownGrace is how long a stopping server waits for requests in flight (uploads
// included) before it closes their connections. An interrupted upload leaves nothing
// visible: its session can be resumed or is cleaned up on the next start.
const shutdownGrace = 30 * time.Second

// Run opens the registry at cfg.Root, listens on cfg.Addr and serves until ctx ends, then
// shuts down gracefully.
func Run(ctx context.Context, cfg Config) error {
	tlsConf, err := cfg.tlsConfig()
	if err != nil {
		return err
	}
	s, err := New(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("registry: listen on %s: %w", cfg.Addr, err)
	}
	return s.Serve(ctx, ln, tlsConf)
}

// Serve serves the registry on ln (over TLS when tlsConf is not nil) until ctx ends. It then
// stops accepting connections and waits up to 30 seconds for requests in flight.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsConf *tls.Config) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		TLSConfig:         tlsConf,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		// Requests must outlive ctx: Shutdown lets them finish (uploads included).
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
	}
	s.log.Info("registry listening", "addr", ln.Addr().String(), "scheme", scheme, "auth", s.auth != nil, "delete", !s.noDelete)
	errc := make(chan error, 1)
	go func() {
		if tlsConf != nil {
			errc <- hs.ServeTLS(ln, "", "")
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("registry: serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("registry shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	err := hs.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = hs.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("registry: shutdown: %w", err)
	}
	return nil
}

// tlsConfig builds the server's TLS configuration, or nil for plain HTTP.
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.TLSCert == "" && c.TLSKey == "" {
		if c.TLSClientCA != "" {
			return nil, errors.New("registry: --tls-client-ca needs --tls-cert and --tls-key")
		}
		return nil, nil
	}
	if c.TLSCert == "" || c.TLSKey == "" {
		return nil, errors.New("registry: --tls-cert and --tls-key must be given together")
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("registry: load TLS key pair: %w", err)
	}
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
	}
	if c.TLSClientCA != "" {
		pem, err := os.ReadFile(c.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("registry: read client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("registry: no PEM certificates in %s", c.TLSClientCA)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return conf, nil
}
