package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

type fakeBuild struct {
	opts BuildOptions
	body string
	err  error
}

func (f *fakeBuild) Build(_ context.Context, opts BuildOptions, r io.Reader, out io.Writer) (string, error) {
	f.opts = opts
	b, _ := io.ReadAll(r)
	f.body = string(b)
	if errdefs.IsInvalidArgument(f.err) {
		return "", f.err
	}
	fmt.Fprint(out, "Step 1/1 : FROM busybox\n")
	if f.err != nil {
		return "", f.err
	}
	return "sha256:abc", nil
}

func TestBuildEndpoint(t *testing.T) {
	fb := &fakeBuild{}
	srv := httptest.NewServer(New(Config{Build: fb}))
	t.Cleanup(srv.Close)
	q := url.Values{"t": {"a", "b:1"}, "dockerfile": {"df"}, "target": {"x"}, "nocache": {"1"}, "q": {"1"},
		"buildargs": {`{"A":"1","B":null}`}, "labels": {`{"l":"v"}`}, "rm": {"1"}, "version": {"1"}}
	resp, b := do(t, srv, "POST", "/v1.50/build?"+q.Encode(), strings.NewReader("TAR"))
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	o := fb.opts
	if fb.body != "TAR" || strings.Join(o.Tags, ",") != "a,b:1" || o.Dockerfile != "df" || o.Target != "x" || !o.NoCache || !o.Quiet ||
		*o.BuildArgs["A"] != "1" || o.BuildArgs["B"] != nil || o.Labels["l"] != "v" {
		t.Errorf("options %+v", o)
	}
	want := `{"stream":"Step 1/1 : FROM busybox\n"}` + "\n" + `{"aux":{"ID":"sha256:abc"}}` + "\n"
	if string(b) != want {
		t.Errorf("stream %q", b)
	}
	// A failure after output ends the stream with errorDetail; one before is an HTTP error.
	fb.err = errors.New("The command 'x' returned a non-zero code: 1")
	_, b = do(t, srv, "POST", "/build", strings.NewReader(""))
	if !strings.Contains(string(b), `"errorDetail":{"message":"The command 'x' returned a non-zero code: 1"}`) || !strings.Contains(string(b), `"error":"The command`) {
		t.Errorf("error stream %s", b)
	}
	fb.err = errdefs.ErrInvalidArgument.WithMessage("bad Dockerfile")
	if resp, _ := do(t, srv, "POST", "/build", strings.NewReader("")); resp.StatusCode != 400 {
		t.Errorf("early error: status %d", resp.StatusCode)
	}
	if resp, _ := do(t, srv, "POST", "/build?version=2", strings.NewReader("")); resp.StatusCode != 501 {
		t.Errorf("buildkit: status %d", resp.StatusCode)
	}
	if resp, _ := do(t, srv, "POST", "/build?buildargs=%7B", strings.NewReader("")); resp.StatusCode != 400 {
		t.Errorf("bad buildargs: status %d", resp.StatusCode)
	}
}
