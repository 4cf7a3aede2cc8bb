//go:build cgo

package cli

/*
#cgo CFLAGS: -std=c11 -Wall -Wextra -O2
#include <stdlib.h>
#include "fastrun.h"
*/
import "C"

import (
	"errors"
	"unsafe"
)

var errMalformedStream = errors.New("malformed multiplexed stream")

// The C client (fastrun.c) runs from a constructor before the Go runtime; the wrappers below
// expose its parts to the tests. Without cgo it is not built and every run goes to Go.

// fastRunAPIVersion is the API version the C client puts in its paths.
const fastRunAPIVersion = C.BERTH_FASTRUN_API_VERSION

// cStrings copies ss into a C array of C strings; free releases it.
func cStrings(ss []string) (arr **C.char, free func()) {
	p := C.malloc(C.size_t(len(ss)+1) * C.size_t(unsafe.Sizeof(uintptr(0))))
	v := unsafe.Slice((**C.char)(p), len(ss)+1)
	for i, s := range ss {
		v[i] = C.CString(s)
	}
	v[len(ss)] = nil
	return (**C.char)(p), func() {
		for _, s := range v[:len(ss)] {
			C.free(unsafe.Pointer(s))
		}
		C.free(p)
	}
}

// fastRunRequest runs the C client's parser on the arguments after "run" with the
// environment env. ok is false when the C client leaves the command line to Go.
func fastRunRequest(args, env []string) (path string, body []byte, detach, ok bool) {
	a, freeA := cStrings(args)
	defer freeA()
	e, freeE := cStrings(env)
	defer freeE()
	const pathMax, bodyMax = 4096, 1 << 20
	pbuf := C.malloc(pathMax)
	defer C.free(pbuf)
	bbuf := C.malloc(bodyMax)
	defer C.free(bbuf)
	var d C.int
	n := C.berth_fastrun_request(C.int(len(args)), a, e, (*C.char)(pbuf), pathMax, (*C.char)(bbuf), bodyMax, &d)
	if n < 0 {
		return "", nil, false, false
	}
	return C.GoString((*C.char)(pbuf)), C.GoBytes(bbuf, C.int(n)), d != 0, true
}

// fastRunJSONString runs the C client's JSON string lookup.
func fastRunJSONString(in []byte, key string) (string, bool) {
	cin := C.CBytes(append(in, 0))
	defer C.free(cin)
	ck := C.CString(key)
	defer C.free(unsafe.Pointer(ck))
	out := C.malloc(C.size_t(len(in) + 1))
	defer C.free(out)
	n := C.berth_fastrun_json_string((*C.char)(cin), C.size_t(len(in)), ck, (*C.char)(out), C.size_t(len(in)+1))
	if n < 0 {
		return "", false
	}
	return C.GoStringN((*C.char)(out), C.int(n)), true
}

// fastRunWaitResult runs the C client's decoder of a wait answer; ok is false when it finds
// the answer malformed.
func fastRunWaitResult(in []byte) (code int64, msg string, ok bool) {
	cin := C.CBytes(append(in, 0))
	defer C.free(cin)
	out := C.malloc(C.size_t(len(in) + 1))
	defer C.free(out)
	var c C.long
	r := C.berth_fastrun_wait_result((*C.char)(cin), C.size_t(len(in)), &c, (*C.char)(out), C.size_t(len(in)+1))
	return int64(c), C.GoString((*C.char)(out)), r == 0
}

// fastRunReadAnswer reads one HTTP answer from fd with the C client's reader.
func fastRunReadAnswer(fd int) (status int, body []byte) {
	const max = 2 << 20
	out := C.malloc(max)
	defer C.free(out)
	var n C.long
	st := C.berth_fastrun_read_answer(C.int(fd), (*C.char)(out), max, &n)
	if st < 0 {
		return -1, nil
	}
	return int(st), C.GoBytes(out, C.int(min(int(n), max)))
}

// fastRunDemux runs the C client's demultiplexer from in to the two descriptors.
func fastRunDemux(in, out, errOut int) error {
	if C.berth_fastrun_demux(C.int(in), C.int(out), C.int(errOut)) < 0 {
		return errMalformedStream
	}
	return nil
}
