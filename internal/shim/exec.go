package shim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ExecRequest is what the daemon asks the shim to run.
type ExecRequest struct {
	ID      string        `json:"id"`
	Process specs.Process `json:"process"`
	Stdin   bool          `json:"stdin"`
	// Detach runs the process with its stdio on /dev/null and answers at once.
	Detach bool `json:"detach"`
}

// ExecStatus is the state of an exec process, served on /exec/state.
type ExecStatus struct {
	ID       string `json:"id"`
	Pid      int    `json:"pid"`
	Running  bool   `json:"running"`
	ExitCode int    `json:"exitCode"`
}

// execWire is how an ExecRequest travels to the C server: its flags in the query string and
// the process as the body, which the server passes to the runtime without parsing it.
func execWire(req ExecRequest) (url.Values, []byte, error) {
	b, err := json.Marshal(req.Process)
	if err != nil {
		return nil, nil, err
	}
	flag := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	q := url.Values{"id": {req.ID}, "stdin": {flag(req.Stdin)}, "detach": {flag(req.Detach)},
		"tty": {flag(req.Process.Terminal)}}
	return q, b, nil
}

// Exec starts a process through the shim and returns a connection carrying its stdio (raw
// with a TTY, multiplexed without) until it exits.
func (c *Client) Exec(ctx context.Context, req ExecRequest) (net.Conn, *bufio.Reader, error) {
	req.Detach = false
	q, b, err := execWire(req)
	if err != nil {
		return nil, nil, err
	}
	return c.hijack(ctx, "/exec", q, b)
}

// ExecDetached starts a process with its stdio on /dev/null.
func (c *Client) ExecDetached(ctx context.Context, req ExecRequest) (ExecStatus, error) {
	req.Detach = true
	q, b, err := execWire(req)
	if err != nil {
		return ExecStatus{}, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://shim/exec?"+q.Encode(), bytes.NewReader(b))
	if err != nil {
		return ExecStatus{}, err
	}
	resp, err := c.http.Do(hreq)
	if err != nil {
		return ExecStatus{}, fmt.Errorf("shim exec: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return ExecStatus{}, fmt.Errorf("shim exec: %s", bytes.TrimSpace(msg))
	}
	var st ExecStatus
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// ExecState returns an exec process's status.
func (c *Client) ExecState(ctx context.Context, id string) (ExecStatus, error) {
	var st ExecStatus
	err := c.do(ctx, http.MethodGet, "/exec/state", url.Values{"id": {id}}, &st)
	return st, err
}

// ExecResize sets an exec's TTY size.
func (c *Client) ExecResize(ctx context.Context, id string, h, w uint16) error {
	q := url.Values{"id": {id}, "h": {strconv.Itoa(int(h))}, "w": {strconv.Itoa(int(w))}}
	return c.do(ctx, http.MethodPost, "/exec/resize", q, nil)
}
