package shim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Client talks to one shim over its socket. The daemon holds one per live container.
type Client struct {
	dir  string
	sock string
	http *http.Client
}

// NewClient returns a client for the shim whose state directory is dir.
func NewClient(dir string) *Client {
	sock := filepath.Join(dir, SocketName)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableCompression: true,
	}
	return &Client{dir: dir, sock: sock, http: &http.Client{Transport: tr}}
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, out any) error {
	u := "http://shim" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("shim %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("shim %s: %s", path, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// State returns the container's status. A shim that has already exited is answered for by its
// exit file.
func (c *Client) State(ctx context.Context) (Status, error) {
	return c.status(ctx, "/state")
}

// Wait blocks until the container exits.
func (c *Client) Wait(ctx context.Context) (Status, error) {
	return c.status(ctx, "/wait")
}

func (c *Client) status(ctx context.Context, path string) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, path, nil, &st)
	if err == nil {
		return st, nil
	}
	// The shim ends once its container's exit is on disk, possibly between our dial and its
	// answer; the exit file then tells.
	fst, ok, ferr := ReadExitFile(c.dir)
	if ferr != nil {
		return Status{}, ferr
	}
	if ok {
		return fst, nil
	}
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return Status{}, fmt.Errorf("shim in %s is gone and left no exit status: %w", c.dir, ErrShimGone)
	}
	return Status{}, err
}

// ErrShimGone means the shim is not running and recorded no exit: it was killed itself.
var ErrShimGone = errors.New("shim gone")

// Start releases the created container.
// It returns the container's status right after; ok is false when the shim (one of an older
// berth) answered without it, and State tells then.
func (c *Client) Start(ctx context.Context) (st Status, ok bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://shim/start", nil)
	if err != nil {
		return st, false, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return st, false, fmt.Errorf("shim /start: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return st, false, fmt.Errorf("shim /start: %s", strings.TrimSpace(string(b)))
	}
	if resp.StatusCode == http.StatusNoContent {
		return st, false, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, false, fmt.Errorf("shim /start: %w", err)
	}
	return st, true, nil
}

// Kill sends sig to the init, or to every process when all is set.
func (c *Client) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	q := url.Values{"signal": {strconv.Itoa(int(sig))}}
	if all {
		q.Set("all", "1")
	}
	return c.do(ctx, http.MethodPost, "/kill", q, nil)
}

// Resize sets the TTY size.
func (c *Client) Resize(ctx context.Context, h, w uint16) error {
	q := url.Values{"h": {strconv.Itoa(int(h))}, "w": {strconv.Itoa(int(w))}}
	return c.do(ctx, http.MethodPost, "/resize", q, nil)
}

// Attach opens an attach stream. The returned connection carries the container's output (raw
// for a TTY, multiplexed otherwise) and takes its input; close it to detach.
func (c *Client) Attach(ctx context.Context, stdin, stdout, stderr bool) (net.Conn, *bufio.Reader, error) {
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	q := url.Values{"stdin": {b(stdin)}, "stdout": {b(stdout)}, "stderr": {b(stderr)}}
	conn, br, err := c.hijack(ctx, "/attach", q, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("attach: %w", err)
	}
	return conn, br, nil
}

// hijack sends a POST whose successful answer turns the connection into a raw stream.
func (c *Client) hijack(ctx context.Context, path string, q url.Values, body []byte) (net.Conn, *bufio.Reader, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.sock)
	if err != nil {
		return nil, nil, err
	}
	u := path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: shim\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", u, len(body))
	if _, err := conn.Write(append([]byte(req), body...)); err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		_ = conn.Close()
		return nil, nil, fmt.Errorf("shim %s: %s", path, strings.TrimSpace(string(msg)))
	}
	return conn, br, nil
}
