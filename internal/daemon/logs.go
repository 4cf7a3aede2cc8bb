package daemon

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/berth-dev/berth/internal/api"
	"github.com/berth-dev/berth/internal/shim"
)

// ContainerLogs streams a container's json-file log, filtered and framed as Docker does.
func (d *Daemon) ContainerLogs(ctx context.Context, ref string, opts api.LogsOptions) (io.ReadCloser, bool, error) {
	c, err := d.ctrs.get(ref)
	if err != nil {
		return nil, false, err
	}
	if !opts.Stdout && !opts.Stderr {
		return nil, false, invalid(errors.New("you must choose at least one stream: stdout or stderr"))
	}
	tail := -1
	if opts.Tail != "" && opts.Tail != "all" {
		n, err := strconv.Atoi(opts.Tail)
		if err != nil || n < 0 {
			return nil, false, invalid(fmt.Errorf("invalid tail %q: use a number of lines or \"all\"", opts.Tail))
		}
		tail = n
	}
	c.mu.Lock()
	tty := c.rec.Config.Tty
	exited, removed := c.exited, c.removed
	live := c.running()
	id := c.rec.ID
	c.mu.Unlock()
	pr, pw := io.Pipe()
	go func() {
		err := d.streamLog(ctx, d.logPath(id), opts, tail, tty, live, exited, removed, pw)
		_ = pw.CloseWithError(err)
	}()
	return pr, tty, nil
}

func (d *Daemon) streamLog(ctx context.Context, path string, opts api.LogsOptions, tail int, tty, follow bool, exited, removed <-chan struct{}, w io.Writer) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		if !opts.Follow || !follow {
			return nil
		}
		// Not written yet; wait for it below.
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-exited:
				return nil
			case <-removed:
				return nil
			case <-time.After(50 * time.Millisecond):
			}
			if f, err = os.Open(path); err == nil {
				break
			}
		}
	} else if err != nil {
		return err
	}
	defer f.Close()
	emit := func(e shim.LogEntry) error {
		if (e.Stream == "stdout" && !opts.Stdout) || (e.Stream == "stderr" && !opts.Stderr) {
			return nil
		}
		if !opts.Since.IsZero() && e.Time.Before(opts.Since) {
			return nil
		}
		if !opts.Until.IsZero() && e.Time.After(opts.Until) {
			return nil
		}
		msg := e.Log
		if opts.Timestamps {
			msg = e.Time.UTC().Format(time.RFC3339Nano) + " " + msg
		}
		if tty {
			_, err := io.WriteString(w, msg)
			return err
		}
		var hdr [8]byte
		hdr[0] = 1
		if e.Stream == "stderr" {
			hdr[0] = 2
		}
		binary.BigEndian.PutUint32(hdr[4:], uint32(len(msg)))
		if _, err := w.Write(hdr[:]); err != nil {
			return err
		}
		_, err := io.WriteString(w, msg)
		return err
	}
	br := bufio.NewReaderSize(f, 64*1024)
	readAll := func(fn func(shim.LogEntry) error) error {
		for {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 && line[len(line)-1] == '\n' {
				var e shim.LogEntry
				if json.Unmarshal(line, &e) == nil {
					if ferr := fn(e); ferr != nil {
						return ferr
					}
				}
			} else if len(line) > 0 {
				// A partial line still being written: re-read it next time.
				if _, serr := f.Seek(-int64(len(line))-int64(br.Buffered()), io.SeekCurrent); serr == nil {
					br.Reset(f)
				}
				return nil
			}
			if err != nil {
				return nil
			}
		}
	}
	if tail >= 0 {
		ring := make([]shim.LogEntry, 0, tail)
		_ = readAll(func(e shim.LogEntry) error {
			if tail == 0 {
				return nil
			}
			if len(ring) == tail {
				ring = append(ring[:0], ring[1:]...)
			}
			ring = append(ring, e)
			return nil
		})
		for _, e := range ring {
			if err := emit(e); err != nil {
				return err
			}
		}
	} else if err := readAll(emit); err != nil {
		return err
	}
	if !opts.Follow || !follow {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-exited:
			return readAll(emit)
		case <-removed:
			return readAll(emit)
		case <-time.After(50 * time.Millisecond):
		}
		if err := readAll(emit); err != nil {
			return err
		}
	}
}
