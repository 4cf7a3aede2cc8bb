package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Listen binds the shim's socket, <Dir>/shim.sock (mode 0600). Bind before Create so that a
// launcher told "created" can connect at once.
func (s *Shim) Listen() (net.Listener, error) {
	sock := filepath.Join(s.cfg.Dir, SocketName)
	_ = os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("chmod %s: %w", sock, err)
	}
	return l, nil
}

// Serve answers the shim's API on l until the container exited and every /wait in flight got
// its answer, or ctx ends.
//
//	GET  /state                        Status
//	GET  /wait                         Status, once exited
//	POST /start
//	POST /kill?signal=N&all=1
//	POST /resize?h=H&w=W
//	POST /attach?stdin=1&stdout=1&stderr=1   hijacked: raw (TTY) or multiplexed output; stdin in
func (s *Shim) Serve(ctx context.Context, l net.Listener) error {
	sock := filepath.Join(s.cfg.Dir, SocketName)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.Status())
	})
	mux.HandleFunc("GET /wait", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.Wait(r.Context())
		if err != nil {
			return
		}
		writeJSON(w, st)
	})
	mux.HandleFunc("POST /start", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Start(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /kill", func(w http.ResponseWriter, r *http.Request) {
		sig, err := strconv.Atoi(r.URL.Query().Get("signal"))
		if err != nil || sig <= 0 || sig > 64 {
			http.Error(w, "invalid signal", http.StatusBadRequest)
			return
		}
		if err := s.Kill(r.Context(), syscall.Signal(sig), r.URL.Query().Get("all") == "1"); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /resize", func(w http.ResponseWriter, r *http.Request) {
		h, herr := strconv.ParseUint(r.URL.Query().Get("h"), 10, 16)
		wd, werr := strconv.ParseUint(r.URL.Query().Get("w"), 10, 16)
		if herr != nil || werr != nil {
			http.Error(w, "invalid h or w", http.StatusBadRequest)
			return
		}
		if err := s.Resize(uint16(h), uint16(wd)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /attach", s.serveAttach)
	mux.HandleFunc("POST /exec", s.serveExec)
	mux.HandleFunc("GET /exec/state", s.serveExecState)
	mux.HandleFunc("POST /exec/resize", func(w http.ResponseWriter, r *http.Request) {
		h, herr := strconv.ParseUint(r.URL.Query().Get("h"), 10, 16)
		wd, werr := strconv.ParseUint(r.URL.Query().Get("w"), 10, 16)
		if herr != nil || werr != nil {
			http.Error(w, "invalid h or w", http.StatusBadRequest)
			return
		}
		if err := s.execResize(r.URL.Query().Get("id"), uint16(h), uint16(wd)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})

	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case <-s.exited:
		// Give clients that are mid-call (a daemon's /wait, an attach draining output) a moment.
		shCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shCtx)
	case <-ctx.Done():
		_ = srv.Close()
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	_ = os.Remove(sock)
	select {
	case <-s.exited:
		<-s.persisted
	default:
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Shim) serveAttach(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	wantIn, wantOut, wantErr := q.Get("stdin") == "1", q.Get("stdout") == "1", q.Get("stderr") == "1"
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "attach needs a hijackable connection", http.StatusInternalServerError)
		return
	}
	var ch chan chunk
	if wantOut || wantErr {
		ch = s.out.add()
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		if ch != nil {
			s.out.remove(ch)
		}
		return
	}
	defer conn.Close()
	_, _ = brw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n")
	if err := brw.Flush(); err != nil {
		return
	}
	if wantIn {
		go s.copyStdin(brw.Reader)
	}
	if ch == nil {
		// Input only: hold the connection until the container exits.
		<-s.exited
		return
	}
	fw := &frameWriter{w: conn}
	for c := range ch {
		if (c.stream == streamStdout && !wantOut) || (c.stream == streamStderr && !wantErr) {
			continue
		}
		var err error
		if s.cfg.Terminal {
			_, err = conn.Write(c.data)
		} else {
			err = fw.writeFrame(c.stream, c.data)
		}
		if err != nil {
			s.out.remove(ch)
			return
		}
	}
	// Output ended: signal EOF to the client by closing our write side.
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// copyStdin forwards an attached client's input to the container. When the client closes its
// side and the container was created with StdinOnce, the container's stdin is closed too.
func (s *Shim) copyStdin(r io.Reader) {
	s.mu.Lock()
	in := s.stdin
	s.mu.Unlock()
	if in == nil {
		return
	}
	_, _ = io.Copy(in, r)
	if s.cfg.StdinOnce && !s.cfg.Terminal {
		s.mu.Lock()
		if s.stdin != nil {
			_ = s.stdin.Close()
			s.stdin = nil
		}
		s.mu.Unlock()
	}
}
