package shim

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Environment of a spare shim: cshim.c's constructor runs it (keep in step with
// BERTH_CSPARE_ENV in cshim.h).
const envCSpare = "_BERTH_CSPARE"

// SpareEnv is the variable a launcher sets for `berth shim --pool`, which makes the process a
// spare shim in C: it waits on fd 3 for a SpareJob, then does what SpareJob says and reports on
// fd 3 (see SpareReport).
const SpareEnv = envCSpare + "=1"

// SpareArgs is a spare's command line after the binary's name. The padding is room for the
// spare to show itself as `berth shim --id ID` once it has its container, as a shim started
// for it would (ps, pgrep -f).
func SpareArgs() []string {
	return []string{"shim", "--pool", strings.Repeat(" ", 96)}
}

// SpareJob is a container for a spare shim: the shim's settings, and the container as
// linux.Prepared left it (see there for what the spare does with each field).
type SpareJob struct {
	Config                   Config
	CloneFlags               uint64
	InitEnv                  []string
	Program                  []byte
	Procs                    []string
	Fifo, OOMCounter         string
	StateFile                string
	StatePrefix, StateSuffix []byte
}

// Tags of the job's records; keep in step with cshim.c.
const (
	jobID = iota + 1
	jobDir
	jobLog
	jobRuntimeRoot
	jobFifo
	jobOOM
	jobTTY
	jobStdin
	jobStdinOnce
	jobClone
	jobEnv
	jobProgram
	jobProc
	jobState
	jobStatePrefix
	jobStateSuffix
)

const spareMagic = 0x314a5342 // "BSJ1"

// Encode is the job as the spare reads it: {magic, length} and records {tag, length, value},
// all in native byte order (the spare is the same binary on the same host).
func (j *SpareJob) Encode() ([]byte, error) {
	var b []byte
	var bad error
	rec := func(tag uint32, v []byte, text bool) {
		if text && strings.IndexByte(string(v), 0) >= 0 {
			bad = errors.Join(bad, fmt.Errorf("spare job: NUL byte in field %d", tag))
		}
		b = binary.NativeEndian.AppendUint32(b, tag)
		b = binary.NativeEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	str := func(tag uint32, s string) { rec(tag, []byte(s), true) }
	flag := func(tag uint32, on bool) {
		if on {
			str(tag, "1")
		}
	}
	c := j.Config
	str(jobID, c.ID)
	str(jobDir, c.Dir)
	str(jobLog, c.LogPath)
	str(jobRuntimeRoot, c.RuntimeRoot)
	str(jobFifo, j.Fifo)
	str(jobOOM, j.OOMCounter)
	flag(jobTTY, c.Terminal)
	flag(jobStdin, c.OpenStdin)
	flag(jobStdinOnce, c.StdinOnce)
	rec(jobClone, binary.NativeEndian.AppendUint64(nil, j.CloneFlags), false)
	for _, e := range j.InitEnv {
		str(jobEnv, e)
	}
	rec(jobProgram, j.Program, false)
	for _, p := range j.Procs {
		str(jobProc, p)
	}
	str(jobState, j.StateFile)
	rec(jobStatePrefix, j.StatePrefix, true)
	rec(jobStateSuffix, j.StateSuffix, true)
	if bad != nil {
		return nil, bad
	}
	if len(j.InitEnv) > 64 || len(j.Procs) > 64 || len(j.Procs) == 0 {
		return nil, fmt.Errorf("spare job: %d environment entries and %d cgroup files (1-64 each)", len(j.InitEnv), len(j.Procs))
	}
	out := binary.NativeEndian.AppendUint32(nil, spareMagic)
	out = binary.NativeEndian.AppendUint32(out, uint32(len(b)))
	return append(out, b...), nil
}

// SpareReport turns a spare's report line into nil ("ok": it serves the container) or the
// error it stands for. The init's own JSON answer ("init {...}") becomes the message that the
// runtime's CreatePid gives for it.
func SpareReport(line string) error {
	line = strings.TrimSpace(line)
	if line == "ok" {
		return nil
	}
	if msg, ok := strings.CutPrefix(line, "error "); ok {
		return errors.New(msg)
	}
	if js, ok := strings.CutPrefix(line, "init "); ok {
		var m struct {
			Type  string `json:"type"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal([]byte(js), &m); err != nil || m.Type != "error" {
			return fmt.Errorf("create container: container init sent %q", js)
		}
		return fmt.Errorf("create container: container init: %s", m.Error)
	}
	return fmt.Errorf("spare shim sent %q", line)
}
