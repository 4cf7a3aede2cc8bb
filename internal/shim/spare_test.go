package shim

import (
	"encoding/binary"
	"strings"
	"testing"
)

func TestSpareJobEncode(t *testing.T) {
	j := &SpareJob{Config: Config{ID: "c1", Dir: "/run/s", RuntimeRoot: "/run/r", Terminal: true},
		CloneFlags: 0x20000, InitEnv: []string{"A=1"}, Program: []byte{0, 1, 2}, Procs: []string{"/p"},
		Fifo: "/f", StateFile: "/s.json", StatePrefix: []byte(`{"id":"c1",`), StateSuffix: []byte(`}`)}
	b, err := j.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if binary.NativeEndian.Uint32(b) != spareMagic || int(binary.NativeEndian.Uint32(b[4:])) != len(b)-8 {
		t.Fatalf("bad header % x", b[:8])
	}
	got := map[uint32][]string{}
	for r := b[8:]; len(r) > 0; {
		tag, n := binary.NativeEndian.Uint32(r), binary.NativeEndian.Uint32(r[4:])
		got[tag] = append(got[tag], string(r[8:8+n]))
		r = r[8+n:]
	}
	for tag, want := range map[uint32]string{jobID: "c1", jobDir: "/run/s", jobTTY: "1", jobEnv: "A=1",
		jobProgram: "\x00\x01\x02", jobProc: "/p", jobState: "/s.json", jobStateSuffix: "}"} {
		if len(got[tag]) != 1 || got[tag][0] != want {
			t.Errorf("tag %d = %q, want %q", tag, got[tag], want)
		}
	}
	if _, ok := got[jobStdin]; ok {
		t.Error("an unset flag was sent")
	}
	j.InitEnv = []string{"A=\x00"}
	if _, err := j.Encode(); err == nil {
		t.Error("a NUL byte in a string was accepted")
	}
}

func TestSpareReport(t *testing.T) {
	for line, want := range map[string]string{
		"ok\n":                         "",
		"error shim: listen: denied\n": "shim: listen: denied",
		`init {"type":"error","error":"exec: \"x\": not found"}` + "\n": `create container: container init: exec: "x": not found`,
		"init garbage\n": `container init sent "garbage"`,
		"what\n":         `spare shim sent "what"`,
	} {
		err := SpareReport(line)
		if (err == nil) != (want == "") || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("SpareReport(%q) = %v, want %q", line, err, want)
		}
	}
}
