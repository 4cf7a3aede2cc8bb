package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/moby/moby/api/types/container"
)

// hijackHeaderSkip are the headers the status line of a hijacked response sets itself, or that
// make no sense on a raw stream; the others (Server, Api-Version, ...) are copied as dockerd does.
var hijackHeaderSkip = map[string]bool{
	"Content-Type": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true, "Upgrade": true,
}

// hijack switches one attach or exec-start request to a raw stream when the backend asks for it
// (its upgrade method is the Upgrade given to the backend), and cleans up after the backend.
type hijack struct {
	w           http.ResponseWriter
	r           *http.Request
	contentType string

	mu   sync.Mutex
	conn *rawConn
	done bool // the handler finished; a late upgrade must not touch the response
}

func newHijack(w http.ResponseWriter, r *http.Request, contentType string) *hijack {
	return &hijack{w: w, r: r, contentType: contentType}
}

// upgrade takes over the connection and writes the status line and headers: "101 UPGRADED"
// when the client asked to upgrade (Upgrade header, as dockerd checks), "200 OK" for older
// clients that did not.
func (h *hijack) upgrade() (RawStream, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.done {
		return nil, errors.New("upgrade after the request ended")
	}
	if h.conn != nil {
		return nil, errors.New("the connection is already upgraded")
	}
	// The request must not be read after the hijack, and a left-over body would otherwise be
	// taken for stdin. Bodies of attach and exec start are small (empty or a JSON object).
	if h.r.Body != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(h.r.Body, maxJSONBody))
	}
	conn, brw, err := http.NewResponseController(h.w).Hijack()
	if errors.Is(err, http.ErrNotSupported) {
		// HTTP/2 has no hijacking; dockerd answers such clients with a bad-parameter error too.
		return nil, invalidArgument(errors.New("cannot stream over this connection: attach and exec need HTTP/1.1"))
	}
	if err != nil {
		return nil, fmt.Errorf("take over the connection: %w", err)
	}
	_, wantsUpgrade := h.r.Header["Upgrade"]
	code := http.StatusOK
	var head bytes.Buffer
	if wantsUpgrade {
		code = http.StatusSwitchingProtocols
		fmt.Fprintf(&head, "HTTP/1.1 101 UPGRADED\r\nContent-Type: %s\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n", h.contentType)
	} else {
		fmt.Fprintf(&head, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n", h.contentType)
	}
	if rw, ok := h.w.(*responseWriter); ok {
		rw.hijacked(code)
	}
	_ = h.w.Header().WriteSubset(&head, hijackHeaderSkip)
	head.WriteString("\r\n")
	// Stdin the client sent right behind the request may already sit in the server's buffer;
	// reading on through that buffer is not allowed after the hijack, so keep a copy.
	var pending []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		pending = bytes.Clone(b)
	}
	if _, err := conn.Write(head.Bytes()); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("write the upgrade response: %w", err)
	}
	h.conn = &rawConn{conn: conn, pending: pending}
	return h.conn, nil
}

// finish ends the request after the backend returned err. Before an upgrade, err is an ordinary
// HTTP error. After it, err goes into the stream (the client sees it from stdcopy, or as text
// on a TTY), and the connection is closed whatever the backend did with it.
func (h *hijack) finish(err error, multiplexed bool) error {
	h.mu.Lock()
	h.done = true
	c := h.conn
	h.mu.Unlock()
	if c == nil {
		if err != nil {
			return err
		}
		// The backend had nothing to stream (it never asked to upgrade): an empty stream.
		h.w.Header().Set("Content-Type", h.contentType)
		h.w.WriteHeader(http.StatusOK)
		return nil
	}
	if err != nil {
		writeStreamError(c, multiplexed, err.Error())
	}
	_ = c.close()
	return err
}

// rawConn is a hijacked connection: the bytes the HTTP server had already buffered are read
// first, then the connection itself.
type rawConn struct {
	conn    net.Conn
	pending []byte // only touched by Read, which the backend calls from one goroutine

	closeOnce sync.Once
	closeErr  error
}

func (c *rawConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.conn.Read(p)
}

func (c *rawConn) Write(p []byte) (int, error) { return c.conn.Write(p) }

// CloseWrite half-closes the connection (TCP and unix sockets shut down their write side; TLS
// sends close_notify), so that the client sees the end of the output and can still send stdin.
// A connection that cannot half-close is closed.
func (c *rawConn) CloseWrite() error {
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.close()
}

// Close is the backend's: it wakes up readers at once (shutting down the read side), but the
// write side stays open until the handler is done, because a backend that fails after the
// upgrade typically closes the stream (deferred) before it returns the error that finish then
// reports in the stream. A connection without a read side of its own (TLS) closes at once.
func (c *rawConn) Close() error {
	if cr, ok := c.conn.(interface{ CloseRead() error }); ok {
		if err := cr.CloseRead(); err == nil {
			return nil
		}
	}
	return c.close()
}

func (c *rawConn) close() error {
	c.closeOnce.Do(func() { c.closeErr = c.conn.Close() })
	return c.closeErr
}

func (s *server) execCreate(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	var req container.ExecCreateRequest
	if err := decodeJSONBody(r.Body, &req); err != nil {
		return err
	}
	if len(req.Cmd) == 0 {
		//lint:ignore ST1005 dockerd's message, which clients may match
		return invalidArgument(errors.New("No exec command specified"))
	}
	if req.ConsoleSize != nil {
		if compareVersions(APIVersionFromContext(ctx), "1.42") < 0 {
			req.ConsoleSize = nil // not part of older APIs
		} else if !req.Tty {
			return invalidArgument(errors.New("console size is only supported when TTY is enabled"))
		}
	}
	id, err := b.ExecCreate(ctx, vars["name"], req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, container.ExecCreateResponse{ID: id})
	return nil
}

// decodeOptionalJSON decodes a JSON body that may also be empty (v is left as it is).
func decodeOptionalJSON(r *http.Request, v any) error {
	if r.Body == nil {
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxJSONBody+1))
	if err != nil {
		return invalidArgument(fmt.Errorf("read request body: %w", err))
	}
	if len(data) > maxJSONBody {
		return invalidArgument(fmt.Errorf("request body larger than %d bytes", maxJSONBody))
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	return decodeJSONBody(bytes.NewReader(data), v)
}

func (s *server) execStart(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	var req container.ExecStartRequest
	if err := decodeOptionalJSON(r, &req); err != nil {
		return err
	}
	if req.ConsoleSize != nil {
		if compareVersions(APIVersionFromContext(ctx), "1.42") < 0 {
			req.ConsoleSize = nil
		} else if !req.Tty {
			return invalidArgument(errors.New("console size is only supported when TTY is enabled"))
		}
	}
	id := vars["name"]
	opts := ExecStartOptions{Detach: req.Detach, Tty: req.Tty, ConsoleSize: req.ConsoleSize}
	if req.Detach {
		noStream := func() (RawStream, error) {
			return nil, invalidArgument(errors.New("a detached exec has no stream to attach to"))
		}
		if err := b.ExecStart(ctx, id, opts, noStream); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	}
	// The media type depends on whether the process has a TTY (from create or from start).
	info, err := b.ExecInspect(ctx, id)
	if err != nil {
		return err
	}
	tty := req.Tty || (info.ProcessConfig != nil && info.ProcessConfig.Tty)
	h := newHijack(w, r, streamContentType(ctx, tty))
	return h.finish(b.ExecStart(ctx, id, opts, h.upgrade), !tty)
}

func (s *server) execResize(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	h, wd, err := terminalSize(r)
	if err != nil {
		return err
	}
	if err := b.ExecResize(ctx, vars["name"], h, wd); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *server) execInspect(ctx context.Context, w http.ResponseWriter, _ *http.Request, vars map[string]string) error {
	b, err := s.containers()
	if err != nil {
		return err
	}
	resp, err := b.ExecInspect(ctx, vars["name"])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}
