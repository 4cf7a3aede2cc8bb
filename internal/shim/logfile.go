package shim

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// maxLogLine is where a long line without a newline is split, as Docker's json-file driver does.
const maxLogLine = 16 * 1024

// LogEntry is one line of Docker's json-file log format.
type LogEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// LogWriter appends json-file entries to a file. Several streams share it; mu orders whole
// entries so that lines never interleave. Each entry is one write(2) of the encoded line: it
// needs no buffer of its own, which an idle shim would carry for its container's lifetime.
type LogWriter struct {
	mu  sync.Mutex // guards f
	f   *os.File
	now func() time.Time
}

// OpenLog opens path for appending.
func OpenLog(path string) (*LogWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", path, err)
	}
	return &LogWriter{f: f, now: time.Now}, nil
}

// Stream returns a writer for one stream ("stdout" or "stderr"). Each complete line becomes an
// entry; a partial line is kept until its newline arrives or Flush is called on the stream.
func (l *LogWriter) Stream(name string) *StreamWriter {
	return &StreamWriter{l: l, name: name}
}

func (l *LogWriter) write(stream string, line []byte) error {
	b, err := json.Marshal(LogEntry{Log: string(line), Stream: stream, Time: l.now().UTC()})
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// One write per entry, so that `logs -f` sees output as it happens.
	_, err = l.f.Write(append(b, '\n'))
	return err
}

// Close flushes and closes the file.
func (l *LogWriter) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// StreamWriter splits a byte stream into log lines. It is used by one goroutine.
type StreamWriter struct {
	l       *LogWriter
	name    string
	partial []byte
}

var _ io.Writer = (*StreamWriter)(nil)

func (s *StreamWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := indexByte(p, '\n')
		if i < 0 {
			s.partial = append(s.partial, p...)
			for len(s.partial) >= maxLogLine {
				if err := s.l.write(s.name, s.partial[:maxLogLine]); err != nil {
					return 0, err
				}
				s.partial = append(s.partial[:0], s.partial[maxLogLine:]...)
			}
			break
		}
		line := p[:i+1]
		if len(s.partial) > 0 {
			line = append(s.partial, line...)
			s.partial = s.partial[:0]
		}
		if err := s.l.write(s.name, line); err != nil {
			return 0, err
		}
		p = p[i+1:]
	}
	return n, nil
}

// Flush writes a pending partial line, if any.
func (s *StreamWriter) Flush() error {
	if len(s.partial) == 0 {
		return nil
	}
	err := s.l.write(s.name, s.partial)
	s.partial = s.partial[:0]
	return err
}

func indexByte(p []byte, c byte) int {
	for i, b := range p {
		if b == c {
			return i
		}
	}
	return -1
}
