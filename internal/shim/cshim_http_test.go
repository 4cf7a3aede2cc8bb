//go:build cgo

package shim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// These tests drive the C server (cshim.c) in the test process through berth_cshim_http_test:
// one connection, a container whose init was reaped, so that no request reaches a process.

func TestCHTTP(t *testing.T) {
	body := `{"args":["/bin/true"],"cwd":"/"}`
	execReq := "POST /exec?id=e1&stdin=0&detach=0&tty=0 HTTP/1.1\r\nHost: shim\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body
	zeros := strings.Repeat("0", 40)
	cases := []struct {
		name  string
		req   string
		chunk int
		code  int    // 0: no answer (yet)
		want  string // in the body
	}{
		{"state", "GET /state HTTP/1.1\r\nHost: shim\r\n\r\n", 0, 200, `"id":"test"`},
		{"state byte by byte", "GET /state HTTP/1.1\r\nHost: shim\r\n\r\n", 1, 200, `"state":"running"`},
		{"unknown path", "GET /nope HTTP/1.1\r\n\r\n", 0, 404, "not found"},
		{"wrong method", "GET /start HTTP/1.1\r\n\r\n", 0, 405, ""},
		{"bad request line", "GARBAGE\r\n\r\n", 0, 400, ""},
		{"no version", "GET /state\r\n\r\n", 0, 400, ""},
		{"chunked body", "POST /exec?id=x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 0, 501, ""},
		{"huge head", "GET /state HTTP/1.1\r\nX: " + strings.Repeat("a", 9000) + "\r\n\r\n", 0, 431, ""},
		{"huge head in pieces", "GET /state HTTP/1.1\r\nX: " + strings.Repeat("a", 9000) + "\r\n\r\n", 1000, 431, ""},
		{"partial head", "GET /state HTTP/1.1\r\nHost: shim\r\n", 0, 0, ""},
		{"bad content length", "POST /kill?signal=9 HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 0, 400, "Content-Length"},
		{"kill", "POST /kill?signal=9 HTTP/1.1\r\n\r\n", 0, 204, ""},
		{"kill signal 0", "POST /kill?signal=0 HTTP/1.1\r\n\r\n", 0, 400, "invalid signal"},
		// Values longer than their buffers are refused, not read past the end of the buffer.
		{"kill long signal", "POST /kill?signal=" + zeros + "9 HTTP/1.1\r\n\r\n", 0, 400, "invalid signal"},
		{"kill long signal 16", "POST /kill?signal=0000000000000009 HTTP/1.1\r\n\r\n", 0, 400, "invalid signal"},
		{"resize long", "POST /resize?h=" + zeros + "&w=" + zeros + " HTTP/1.1\r\n\r\n", 0, 400, "invalid h or w"},
		{"resize no tty", "POST /resize?h=10&w=20 HTTP/1.1\r\n\r\n", 0, 400, "no TTY"},
		{"exec resize long id", "POST /exec/resize?id=" + strings.Repeat("a", 300) + "&h=1&w=1 HTTP/1.1\r\n\r\n", 0, 400, "no TTY"},
		{"exec state long id", "GET /exec/state?id=" + strings.Repeat("a", 300) + " HTTP/1.1\r\n\r\n", 0, 404, "no such exec"},
		{"attach long flag", "POST /attach?stdin=" + zeros + " HTTP/1.1\r\n\r\n", 0, 200, ""},
		// The whole body is read (at once or in pieces) before the exec is refused.
		{"exec", execReq, 0, 409, "not running"},
		{"exec in pieces", execReq, 7, 409, "not running"},
		{"exec body and input", execReq + "input for the process", 3, 409, "not running"},
		{"exec short body", strings.TrimSuffix(execReq, "}"), 0, 0, ""},
		{"exec without body", "POST /exec?id=e1 HTTP/1.1\r\n\r\n", 0, 400, "invalid exec request"},
		{"exec body too large", "POST /exec?id=e1 HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n", 0, 400, "invalid exec request"},
		{"exec bad id", "POST /exec?id=a/b HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 0, 400, "invalid exec request"},
		{"start", "POST /start HTTP/1.1\r\n\r\n", 0, 409, "is exited, not created"},
		{"wait", "GET /wait HTTP/1.1\r\n\r\n", 0, 0, ""},
		{"pipelined", "GET /state HTTP/1.1\r\n\r\nGET /state HTTP/1.1\r\n\r\n", 0, 200, `"id":"test"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := cHTTP([]byte(tc.req), tc.chunk)
			if tc.code == 0 {
				if len(out) != 0 {
					t.Fatalf("answer %q; want none", out)
				}
				return
			}
			resp, b := checkCHTTPAnswer(t, out)
			if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.want) {
				t.Fatalf("answer %d %q; want %d with %q", resp.StatusCode, b, tc.code, tc.want)
			}
		})
	}
	// /state is the shim's Status.
	_, b := checkCHTTPAnswer(t, cHTTP([]byte("GET /state HTTP/1.1\r\n\r\n"), 0))
	var st Status
	if err := json.Unmarshal(b, &st); err != nil || st.ID != "test" || st.State != "running" {
		t.Fatalf("state %q: %+v, %v", b, st, err)
	}
}

// checkCHTTPAnswer parses the C server's one answer on a connection: a well-formed HTTP/1.1
// response whose body is exactly its Content-Length (or a hijacked stream's start).
func checkCHTTPAnswer(t *testing.T, out []byte) (*http.Response, []byte) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(out))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("answer %q: %v", out, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("answer %q: body: %v", out, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") == "application/vnd.docker.raw-stream":
		if resp.ContentLength != -1 {
			t.Fatalf("hijacked answer with a length: %q", out)
		}
	case resp.StatusCode == http.StatusNoContent:
		if len(b) != 0 {
			t.Fatalf("204 with a body: %q", out)
		}
	default:
		if resp.ContentLength != int64(len(b)) || br.Buffered() != 0 {
			t.Fatalf("answer %q: Content-Length %d, body %d bytes", out, resp.ContentLength, len(b))
		}
	}
	if resp.ProtoMajor != 1 || resp.ProtoMinor != 1 {
		t.Fatalf("answer %q: protocol %s", out, resp.Proto)
	}
	return resp, b
}

// FuzzCHTTP feeds arbitrary bytes, in arbitrary pieces, to the C server's request parser. Run it
// with -asan too: the server must not read or write outside its buffers.
func FuzzCHTTP(f *testing.F) {
	body := `{"args":["/bin/true"]}`
	for _, s := range []string{
		"GET /state HTTP/1.1\r\nHost: shim\r\n\r\n",
		"POST /kill?signal=9&all=0 HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
		"POST /resize?h=10&w=%32%30 HTTP/1.1\r\n\r\n",
		"POST /attach?stdin=1&stdout=1&stderr=1 HTTP/1.1\r\nUpgrade: tcp\r\n\r\ninput",
		"POST /exec?id=e1&stdin=1&tty=1 HTTP/1.1\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body + "input",
		"GET /exec/state?id=e1 HTTP/1.1\r\n\r\n",
		"POST /exec/resize?id=e1&h=1&w=1 HTTP/1.1\r\n\r\n",
		"GET /wait HTTP/1.1\r\n\r\n",
		"POST /start HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST /kill?signal=000000000000000000009 HTTP/1.1\r\n\r\n",
		"\r\n\r\n",
		"GET  HTTP/1.1\r\n:\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, req []byte, chunk uint8) {
		out := cHTTP(req, int(chunk))
		if len(out) == 0 {
			return
		}
		resp, _ := checkCHTTPAnswer(t, out)
		switch resp.StatusCode {
		case 200, 204, 400, 404, 405, 409, 413, 431, 500, 501:
		default:
			t.Fatalf("status %d for %q", resp.StatusCode, req)
		}
	})
}

// TestCExecExitBookkeeping: processes reaped while no exec is starting (a failed exec's process,
// killed by the runtime) must neither fill the table of exits that came before their exec's PID
// was known, so that a later exec's exit is lost and its stream never ends, nor be taken for a
// later exec that reuses the PID.
func TestCExecExitBookkeeping(t *testing.T) {
	for _, junk := range []int{0, 10, 5000} {
		code, e2Running := cExecExitTest(junk, 999999)
		if code != 7 {
			t.Errorf("after %d unrelated exits: exec exit code %d, want 7", junk, code)
		}
		if junk > 0 && !e2Running {
			t.Errorf("after %d unrelated exits: an exec reusing one of their PIDs was taken as exited", junk)
		}
	}
}
