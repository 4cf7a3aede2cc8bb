//go:build cgo

package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/version"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

// createRequest is what both clients send to create a container.
type createRequest struct {
	container.Config
	HostConfig       *container.HostConfig
	NetworkingConfig *network.NetworkingConfig
}

// createRecorder is a daemon that answers the ping and refuses every create after recording
// it: enough to see what the Go client sends for a command line.
type createRecorder struct {
	host string
	mu   sync.Mutex
	path string
	body []byte
}

func newCreateRecorder(t testing.TB) *createRecorder {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	r := &createRecorder{host: "unix://" + sock}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Api-Version", version.APIVersion)
		if strings.HasSuffix(req.URL.Path, "/containers/create") {
			b, _ := io.ReadAll(req.Body)
			r.mu.Lock()
			r.path, r.body = req.URL.RequestURI(), b
			r.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"message":"recorded"}`))
			return
		}
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

// goCreate runs `berth run ARGS` with the Go client and returns the create it sent (ok false
// when it sent none, e.g. for a usage error).
func (r *createRecorder) goCreate(t testing.TB, args []string) (path string, body []byte, ok bool) {
	t.Helper()
	r.mu.Lock()
	r.path, r.body = "", nil
	r.mu.Unlock()
	var out, errOut bytes.Buffer
	c := &cli{in: strings.NewReader(""), out: &out, err: &errOut}
	c.run(append([]string{"-H", r.host, "run"}, args...))
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.path, r.body, r.path != ""
}

func decodeCreate(t testing.TB, b []byte) createRequest {
	t.Helper()
	var cr createRequest
	if err := json.Unmarshal(b, &cr); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return cr
}

// sameCreate fails t unless the C client's request for args decodes to the Go client's.
func sameCreate(t testing.TB, r *createRecorder, args []string) (accepted bool) {
	t.Helper()
	cPath, cBody, _, ok := fastRunRequest(args, os.Environ())
	if !ok {
		return false
	}
	goPath, goBody, sent := r.goCreate(t, args)
	if !sent {
		t.Fatalf("run %q: the C client sends a create, the Go client none", args)
	}
	cu, err := url.ParseRequestURI(cPath)
	if err != nil {
		t.Fatalf("run %q: C path %q: %v", args, cPath, err)
	}
	gu, _ := url.ParseRequestURI(goPath)
	if cu.Path != gu.Path || cu.Query().Get("name") != gu.Query().Get("name") {
		t.Fatalf("run %q: C path %q, Go path %q", args, cPath, goPath)
	}
	c, g := decodeCreate(t, cBody), decodeCreate(t, goBody)
	if !reflect.DeepEqual(c, g) {
		cj, _ := json.Marshal(c)
		gj, _ := json.Marshal(g)
		t.Fatalf("run %q: the clients' creates differ\nC:  %s\nGo: %s", args, cj, gj)
	}
	return true
}

func TestFastRunMatchesGoClient(t *testing.T) {
	t.Setenv("BERTH_TEST_FASTRUN_VAR", "from the client")
	r := newCreateRecorder(t)
	accepted := [][]string{
		{"busybox"},
		{"busybox", "true"},
		{"--rm", "--network", "none", "busybox", "true"},
		{"--rm=false", "--net=host", "busybox", "sh", "-c", "echo <&> \"q\" \\ \t\x01 é"},
		{"-d", "--name", "web.1", "busybox", "sleep", "9"},
		{"--detach=true", "--name=a b/c?", "busybox"},
		{"-e", "A=1", "--env", "B=", "-e", "BERTH_TEST_FASTRUN_VAR", "-e", "BERTH_TEST_UNSET_VAR", "--env=C=x=y", "busybox", "env"},
		{"-e", "", "busybox"},
		{"-w", "/tmp", "-u", "1000:1000", "--workdir=/", "--user=nobody", "busybox", "id"},
		{"-l", "a=1", "--label", "b", "--label=a=2", "-l", "=x", "busybox"},
		{"--entrypoint", "", "busybox", "x"},
		{"--entrypoint=/bin/sh", "busybox", "-c", "true"},
		{"--init", "--read-only", "--privileged", "busybox"},
		{"--init=false", "--read-only=0", "--privileged=F", "busybox"},
		{"--", "busybox", "--rm"},
		{"busybox", "-d", "--name", "x"},
		{"--name", "--rm", "busybox"},
	}
	for _, args := range accepted {
		if !sameCreate(t, r, args) {
			t.Errorf("run %q: the C client left it to Go", args)
		}
	}
	declined := [][]string{
		{},
		{"--rm"},
		{"-it", "busybox"},
		{"-i", "busybox"},
		{"-t", "busybox"},
		{"-eA=1", "busybox"},
		{"--rm=maybe", "busybox"},
		{"-p", "80:80", "busybox"},
		{"--memory", "64m", "busybox"},
		{"--name"},
		{"--hostname", "h", "busybox"},
		{"-v", "/x:/y", "busybox"},
	}
	for _, args := range declined {
		if _, _, _, ok := fastRunRequest(args, os.Environ()); ok {
			t.Errorf("run %q: the C client took it, Go must", args)
		}
	}
}

func TestFastRunDetach(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		detach bool
	}{
		{[]string{"busybox"}, false},
		{[]string{"-d", "busybox"}, true},
		{[]string{"--detach", "--detach=false", "busybox"}, false},
	} {
		_, _, d, ok := fastRunRequest(tc.args, nil)
		if !ok || d != tc.detach {
			t.Errorf("%q: detach %v ok %v, want %v", tc.args, d, ok, tc.detach)
		}
	}
}

// The C client names the API version in its paths; it must be the daemon's.
func TestFastRunAPIVersion(t *testing.T) {
	if fastRunAPIVersion != version.APIVersion {
		t.Fatalf("fastrun.h speaks API %s, the daemon %s: update BERTH_FASTRUN_API_VERSION", fastRunAPIVersion, version.APIVersion)
	}
}

func FuzzFastRunArgs(f *testing.F) {
	for _, s := range []string{
		"--rm\x00--network\x00none\x00busybox\x00true",
		"-d\x00--name\x00x\x00-e\x00A\x00busybox",
		"--label=a=b\x00--entrypoint=\x00--init=1\x00img\x00--\x00x",
		"-e\x00-d\x00busybox",
	} {
		f.Add(s)
	}
	r := newCreateRecorder(f)
	f.Fuzz(func(t *testing.T, s string) {
		args := strings.Split(s, "\x00")
		if len(args) > 64 {
			return
		}
		sameCreate(t, r, args)
	})
}

func TestFastRunJSON(t *testing.T) {
	body := []byte(`{"Id" : "abc\u00e9\ud83d\ude00\n", "x":[1,{"y":"\""}], "Warnings":null, "message":" bad \t"}`)
	if v, ok := fastRunJSONString(body, "id"); !ok || v != "abcé😀\n" {
		t.Errorf("Id = %q %v", v, ok)
	}
	if v, ok := fastRunJSONString(body, "message"); !ok || v != " bad \t" {
		t.Errorf("message = %q %v", v, ok)
	}
	if _, ok := fastRunJSONString(body, "Warnings"); ok {
		t.Error("null read as a string")
	}
	if _, ok := fastRunJSONString([]byte(`{"a":[1,2`), "Id"); ok {
		t.Error("truncated JSON accepted")
	}
	for in, want := range map[string]struct {
		code int64
		msg  string
		ok   bool
	}{
		`{"StatusCode":3,"Error":null}`:                       {3, "", true},
		`{"StatusCode":0,"Error":{"Message":"it \u00e9"}}`:    {0, "it é", true},
		`{"Error":{"Message":"x"},"StatusCode":137}`:          {137, "x", true},
		`{"StatusCode":"3"}`:                                  {0, "", false},
		`{"StatusCode":-1,"Error":{"Message":"no result"}}`:   {-1, "no result", true},
		`{"statuscode":256,"error":{"message":"lower case"}}`: {256, "lower case", true},
		`{"StatusCode":1,"StatusCode":2}`:                     {2, "", true},
		`{"StatusCode":1`:                                     {0, "", false},
	} {
		code, msg, ok := fastRunWaitResult([]byte(in))
		if ok != want.ok || (ok && (code != want.code || msg != want.msg)) {
			t.Errorf("%s: %d %q %v, want %d %q %v", in, code, msg, ok, want.code, want.msg, want.ok)
		}
	}
}

// FuzzFastRunWaitResult compares the C decoder of wait answers with encoding/json.
func FuzzFastRunWaitResult(f *testing.F) {
	for _, s := range []string{`{"StatusCode":3,"Error":null}`, `{"StatusCode":1,"Error":{"Message":"a\"\\\u0041"}}`, `{"StatusCode":1,"Error":{"Message":"\ud800x"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		code, msg, ok := fastRunWaitResult(b)
		var w container.WaitResponse
		if !ok || json.Unmarshal(b, &w) != nil || w.StatusCode < -100000000 || w.StatusCode > 100000000 || bytes.Contains(b, []byte{0}) ||
			bytes.Contains(b, []byte(`\u`)) || !asciiOnly(b) {
			// Only answers both take are compared, and keys as the daemon writes them (Go also
			// matches escaped and Unicode-folded keys; the daemon sends neither).
			return
		}
		if code != w.StatusCode {
			t.Fatalf("%q: C status %d, Go %d", b, code, w.StatusCode)
		}
		goMsg := ""
		if w.Error != nil {
			goMsg = w.Error.Message
		}
		if msg != goMsg && !strings.ContainsRune(goMsg, 0) {
			t.Fatalf("%q: C message %q, Go %q", b, msg, goMsg)
		}
	})
}

// readAnswer feeds raw to the C HTTP reader through a pipe.
func readAnswer(t testing.TB, raw []byte) (int, []byte) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	go func() {
		_, _ = pw.Write(raw)
		pw.Close()
	}()
	return fastRunReadAnswer(int(pr.Fd()))
}

func TestFastRunReadAnswer(t *testing.T) {
	for _, tc := range []struct {
		raw    string
		status int
		body   string
	}{
		{"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\n{}\r\nextra", 201, "{}\r\n"},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer: 1\r\n\r\n", 200, "abcde"},
		{"HTTP/1.1 204 No Content\r\n\r\n", 204, ""},
		{"HTTP/1.0 500 Internal\r\n\r\nuntil the end", 500, "until the end"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", -1, ""},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", -1, ""},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n", -1, ""},
		{"SSH-2.0\r\n\r\n", -1, ""},
		{"HTTP/1.1 200 OK\r\n", -1, ""},
	} {
		st, body := readAnswer(t, []byte(tc.raw))
		if st != tc.status || (st >= 0 && string(body) != tc.body) {
			t.Errorf("%q: %d %q, want %d %q", tc.raw, st, body, tc.status, tc.body)
		}
	}
}

func FuzzFastRunReadAnswer(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		readAnswer(t, b) // must not crash or hang
	})
}

// demux runs the C demultiplexer over raw and returns what reached each output.
func demux(t testing.TB, raw []byte) (stdout, stderr []byte, err error) {
	t.Helper()
	dir := t.TempDir()
	in, out, errOut := filepath.Join(dir, "in"), filepath.Join(dir, "out"), filepath.Join(dir, "err")
	if err := os.WriteFile(in, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Open(in)
	defer fi.Close()
	fo, _ := os.Create(out)
	defer fo.Close()
	fe, _ := os.Create(errOut)
	defer fe.Close()
	err = fastRunDemux(int(fi.Fd()), int(fo.Fd()), int(fe.Fd()))
	stdout, _ = os.ReadFile(out)
	stderr, _ = os.ReadFile(errOut)
	return stdout, stderr, err
}

// FuzzFastRunDemux: frames as the daemon writes them, the C client reads back stream by stream.
func FuzzFastRunDemux(f *testing.F) {
	f.Add([]byte("a\nb"), []byte("err"), uint8(3))
	f.Add(bytes.Repeat([]byte("x"), 100000), []byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, o, e []byte, order uint8) {
		var raw bytes.Buffer
		frame := func(stream byte, p []byte) {
			if len(p) == 0 {
				return
			}
			raw.Write([]byte{stream, 0, 0, 0, byte(len(p) >> 24), byte(len(p) >> 16), byte(len(p) >> 8), byte(len(p))})
			raw.Write(p)
		}
		half := len(o) / 2
		if order&1 != 0 {
			frame(byte(stdcopy.Stderr), e)
		}
		frame(byte(stdcopy.Stdout), o[:half])
		if order&1 == 0 {
			frame(byte(stdcopy.Stderr), e)
		}
		frame(byte(stdcopy.Stdout), o[half:])
		gotO, gotE, err := demux(t, raw.Bytes())
		if err != nil || !bytes.Equal(gotO, o) || !bytes.Equal(gotE, e) {
			t.Fatalf("demux: %v, stdout %d/%d bytes, stderr %d/%d", err, len(gotO), len(o), len(gotE), len(e))
		}
		// Any bytes at all: no crash, no hang.
		_, _, _ = demux(t, append([]byte{byte(order)}, o...))
	})
}

func asciiOnly(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
