package shim

/*
#cgo CFLAGS: -std=c11 -Wall -Wextra -O2
#include <stdlib.h>
#include "cshim.h"
*/
import "C"

import (
	"time"
	"unsafe"
)

// cShimBuilt tells Handover that the C steady state is in this binary.
const cShimBuilt = true

// The steady state is C (cshim.c), entered from a constructor before the Go runtime starts;
// these wrappers expose its encoders to the tests, which compare them with encoding/json.

// cLogEntry encodes one json-file entry with the C encoder.
func cLogEntry(stream string, line []byte, t time.Time) []byte {
	out := C.malloc(C.berth_cshim_log_entry_max(C.size_t(len(line))))
	defer C.free(out)
	cs := C.CString(stream)
	defer C.free(unsafe.Pointer(cs))
	var p *C.uchar
	if len(line) > 0 {
		p = (*C.uchar)(unsafe.Pointer(&line[0]))
	}
	n := C.berth_cshim_log_entry((*C.char)(out), cs, p, C.size_t(len(line)), C.int64_t(t.Unix()), C.long(t.Nanosecond()))
	return C.GoBytes(out, C.int(n))
}

// cHTTP serves one connection with the C server, its client sending req in pieces of chunk
// bytes (0: at once), and returns the server's answer. The container is one whose init was
// reaped, so no request reaches a process. Not safe for concurrent use (the C state is global).
func cHTTP(req []byte, chunk int) []byte {
	const max = 1 << 20
	out := C.malloc(max)
	defer C.free(out)
	var p *C.uchar
	if len(req) > 0 {
		cp := C.CBytes(req)
		defer C.free(cp)
		p = (*C.uchar)(cp)
	}
	n := C.berth_cshim_http_test(p, C.size_t(len(req)), C.size_t(chunk), (*C.char)(out), max)
	return C.GoBytes(out, C.int(n))
}

// cExecExitTest runs berth_cshim_exec_exit_test (see cshim.c). Not safe for concurrent use.
func cExecExitTest(junk, pid int) (e1Code int, e2Running bool) {
	var running C.int
	code := C.berth_cshim_exec_exit_test(C.int(junk), C.int(pid), &running)
	return int(code), running != 0
}
