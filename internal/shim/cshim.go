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
