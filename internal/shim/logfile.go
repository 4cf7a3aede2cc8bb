package shim

import "time"

// LogEntry is one line of Docker's json-file log format, as the shim writes it (cshim.c
// log_stream: one entry per line, lines without newline cut at 16 KiB).
type LogEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}
