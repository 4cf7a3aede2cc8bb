package daemon

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/berth-dev/berth/internal/api"
	mcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
)

// ContainerAttach connects a client to a container's streams through its shim. An attach to a
// created container waits for start, which holds the process until the client is connected.
func (d *Daemon) ContainerAttach(ctx context.Context, ref string, opts api.AttachOptions, upgrade api.Upgrade) error {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return err
	}
	keys, err := parseDetachKeys(opts.DetachKeys)
	if err != nil {
		return invalid(err)
	}
	c.mu.Lock()
	var waiter *attachWaiter
	h := c.shim
	switch {
	case c.running():
	case c.rec.State.Status == mcontainer.StateCreated || c.rec.State.Status == mcontainer.StateRestarting:
		waiter = &attachWaiter{h: make(chan *shimHandle, 1), ready: make(chan struct{})}
		c.attachWaiters = append(c.attachWaiters, waiter)
	default:
		c.mu.Unlock()
		return conflict("You cannot attach to a stopped container, start it first")
	}
	id, removed := c.rec.ID, c.removed
	c.mu.Unlock()

	stream, err := upgrade()
	if err != nil {
		return err
	}
	defer stream.Close()
	d.events.Publish(events.ContainerEventType, events.ActionAttach, id, ctrAttrs(&c.rec))
	if waiter != nil {
		var ok bool
		select {
		case h, ok = <-waiter.h:
			if !ok {
				return nil // start failed; the client learns it from start and wait
			}
		case <-removed:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
	conn, br, err := h.client.Attach(ctx, opts.Stdin, opts.Stdout, opts.Stderr)
	if waiter != nil {
		close(waiter.ready)
	}
	if err != nil {
		return fmt.Errorf("attach to %s: %w", id, err)
	}
	defer conn.Close()
	detached := make(chan struct{})
	if opts.Stdin {
		go func() {
			var in io.Reader = stream
			if len(keys) > 0 {
				in = &detachReader{r: stream, keys: keys, detached: detached}
			}
			_, _ = io.Copy(conn, in)
			if cw, ok := conn.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
		}()
	}
	outDone := make(chan struct{})
	go func() {
		_, _ = io.Copy(stream, br)
		close(outDone)
	}()
	select {
	case <-outDone:
	case <-detached:
		d.events.Publish(events.ContainerEventType, events.ActionDetach, id, ctrAttrs(&c.rec))
	case <-ctx.Done():
	}
	_ = stream.CloseWrite()
	return nil
}

// ContainerResize sets the container's TTY size.
func (d *Daemon) ContainerResize(ctx context.Context, ref string, height, width uint16) error {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	h := c.shim
	running := c.running()
	c.mu.Unlock()
	if !running {
		return conflict(fmt.Sprintf("container %s is not running", ref))
	}
	return h.client.Resize(ctx, height, width)
}

// parseDetachKeys parses Docker's detach key syntax ("ctrl-p,ctrl-q", "a", "ctrl-@").
// The default for an interactive attach is ctrl-p,ctrl-q.
func parseDetachKeys(s string) ([]byte, error) {
	if s == "" {
		return []byte{16, 17}, nil
	}
	var out []byte
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		switch {
		case len(k) == 1:
			out = append(out, k[0])
		case strings.HasPrefix(k, "ctrl-") && len(k) == 6:
			ch := k[5]
			switch {
			case ch >= 'a' && ch <= 'z':
				out = append(out, ch-'a'+1)
			case ch == '@':
				out = append(out, 0)
			case ch >= '[' && ch <= '_':
				out = append(out, ch-'['+27)
			default:
				return nil, fmt.Errorf("invalid detach keys %q: unknown key %q", s, k)
			}
		default:
			return nil, fmt.Errorf("invalid detach keys %q: use a comma-separated list like ctrl-p,ctrl-q", s)
		}
	}
	return out, nil
}

// detachReader passes input through until the detach sequence appears, then reports EOF. A
// partial match is held back and released if the next byte breaks the sequence.
type detachReader struct {
	r        io.Reader
	keys     []byte
	matched  int
	detached chan struct{}
	out      []byte // bytes ready for the caller
	err      error  // the underlying reader's error, returned once out is drained
	buf      [4096]byte
}

func (d *detachReader) Read(p []byte) (int, error) {
	for {
		if len(d.out) > 0 {
			n := copy(p, d.out)
			d.out = d.out[n:]
			return n, nil
		}
		if d.err != nil {
			return 0, d.err
		}
		n, err := d.r.Read(d.buf[:])
		for _, b := range d.buf[:n] {
			if b == d.keys[d.matched] {
				d.matched++
				if d.matched == len(d.keys) {
					close(d.detached)
					d.err = io.EOF
					break
				}
				continue
			}
			if d.matched > 0 {
				d.out = append(d.out, d.keys[:d.matched]...)
				d.matched = 0
				if b == d.keys[0] {
					d.matched = 1
					continue
				}
			}
			d.out = append(d.out, b)
		}
		if err != nil && d.err == nil {
			d.err = err
		}
	}
}
