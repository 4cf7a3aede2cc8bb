package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/containerd/errdefs"
)

// SamplesPerDay is the number of 5-minute samples in a PlanetLab trace file.
const SamplesPerDay = 288

// Trace is one VM's CPU utilisation for one day, in percent.
type Trace struct {
	Name    string
	Samples [SamplesPerDay]uint8
}

// ParseTrace parses one trace file: exactly 288 lines, each an integer
// percentage from 0 to 100. A final newline is optional; CR before LF is
// tolerated.
func ParseTrace(name string, data []byte) (Trace, error) {
	t := Trace{Name: name}
	n := 0
	line := 0
	for len(data) > 0 {
		line++
		var l []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			l, data = data, nil
		}
		l = bytes.TrimSuffix(l, []byte{'\r'})
		l = bytes.TrimSpace(l)
		if n >= SamplesPerDay {
			if len(l) == 0 && len(data) == 0 {
				break
			}
			return Trace{}, fmt.Errorf("trace %q has more than %d lines; each file must hold exactly %d samples (one day at 5-minute intervals): %w",
				name, SamplesPerDay, SamplesPerDay, errdefs.ErrInvalidArgument)
		}
		v, err := strconv.Atoi(string(l))
		if err != nil || v < 0 || v > 100 {
			return Trace{}, fmt.Errorf("trace %q line %d: %q is not an integer percentage from 0 to 100: %w",
				name, line, truncate(l), errdefs.ErrInvalidArgument)
		}
		t.Samples[n] = uint8(v)
		n++
	}
	if n != SamplesPerDay {
		return Trace{}, fmt.Errorf("trace %q has %d lines; each file must hold exactly %d samples (one day at 5-minute intervals): %w",
			name, n, SamplesPerDay, errdefs.ErrInvalidArgument)
	}
	return t, nil
}

func truncate(b []byte) string {
	if len(b) > 20 {
		return string(b[:20]) + "..."
	}
	return string(b)
}

// LoadDay reads every regular file in dir as a trace, in sorted name order
// (CloudSim's order is whatever File.listFiles returns, which depends on the
// file system; sorting makes runs repeatable). Dot files and directories are
// skipped.
func LoadDay(dir string) ([]Trace, error) {
	st, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("--trace %q: no such directory; pass a folder with one file per VM (e.g. .../planetlab/20110303): %w", dir, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("--trace %q: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("--trace %q is a file, not a directory; pass the folder that holds one file per VM: %w", dir, errdefs.ErrInvalidArgument)
	}
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, fmt.Errorf("--trace %q: reading directory: %w", dir, err)
	}
	var out []Trace
	for _, e := range entries {
		if e.IsDir() || e.Name()[0] == '.' || !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("--trace %q: %w", dir, err)
		}
		t, err := ParseTrace(e.Name(), data)
		if err != nil {
			return nil, fmt.Errorf("--trace %q: %w", dir, err)
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--trace %q holds no trace files; pass a folder with one file per VM of %d lines: %w", dir, SamplesPerDay, errdefs.ErrInvalidArgument)
	}
	return out, nil
}
