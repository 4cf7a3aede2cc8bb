package cli

import (
	"context"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
	"github.com/moby/term"
)

// streamIO pipes a hijacked attach or exec connection to the terminal: output to c.out (and
// c.err without a TTY, demultiplexed), and, when stdin is attached, c.in to the connection. On a
// terminal with a TTY the local terminal goes raw for the duration and its size follows
// SIGWINCH through resize. It returns when the output ends.
func (c *cli) streamIO(ctx context.Context, resp client.HijackedResponse, tty, stdin bool, resize func(h, w uint) error) error {
	if tty && stdin {
		if fd, ok := isTerminal(c.in); ok {
			st, err := term.SetRawTerminal(fd)
			if err == nil {
				defer func() { _ = term.RestoreTerminal(fd, st) }()
			}
		}
	}
	if tty && resize != nil {
		c.followTerminalSize(ctx, resize)
	}
	outDone := make(chan error, 1)
	go func() {
		var err error
		if tty {
			_, err = io.Copy(c.out, resp.Reader)
		} else {
			_, err = stdcopy.StdCopy(c.out, c.err, resp.Reader)
		}
		outDone <- err
	}()
	if stdin {
		go func() {
			_, _ = io.Copy(resp.Conn, c.in)
			_ = resp.CloseWrite()
		}()
	}
	select {
	case err := <-outDone:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// followTerminalSize sends the output terminal's size now and on every SIGWINCH.
func (c *cli) followTerminalSize(ctx context.Context, resize func(h, w uint) error) {
	fd, ok := isTerminal(c.out)
	if !ok {
		return
	}
	send := func() {
		if ws, err := term.GetWinsize(fd); err == nil && ws.Height > 0 {
			_ = resize(uint(ws.Height), uint(ws.Width))
		}
	}
	send()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGWINCH)
	go func() {
		defer signal.Stop(sig)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
				send()
			}
		}
	}()
}

// proxySignals forwards the signals the CLI receives to container id while the returned stop
// function has not been called, as docker's --sig-proxy does for a container without a TTY
// (with one, ^C reaches the container through the terminal). The CLI itself then outlives a
// ^C and exits with the container. The CLI keeps its own (proxiedSignals); the C client
// (fastrun.c, proxied) forwards the same ones.
func proxySignals(ctx context.Context, cl *client.Client, id string) (stop func()) {
	sigc := make(chan os.Signal, 64)
	signal.Notify(sigc, proxiedSignals()...)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case s := <-sigc:
				if n, ok := s.(syscall.Signal); ok {
					_, _ = cl.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: strconv.Itoa(int(n))})
				}
			}
		}
	}()
	return func() {
		signal.Stop(sigc)
		close(done)
	}
}

// proxiedSignals are the signals --sig-proxy forwards: all but the client's own (children,
// a broken output pipe, which ends the client as it ends other tools, the window size, the Go
// runtime's SIGURG), faults, and glibc's reserved real-time signals.
func proxiedSignals() []os.Signal {
	var sigs []os.Signal
	for n := syscall.Signal(1); n < 65; n++ {
		switch n {
		case syscall.SIGKILL, syscall.SIGSTOP, syscall.SIGCHLD, syscall.SIGPIPE, syscall.SIGWINCH, syscall.SIGURG,
			syscall.SIGSEGV, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGILL, syscall.SIGTRAP, syscall.SIGSYS, 32, 33:
			continue
		}
		sigs = append(sigs, n)
	}
	return sigs
}
