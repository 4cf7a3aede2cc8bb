package registry

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestInterruptedUpload covers a client that disappears in the middle of a chunk and a
// server that dies in the middle of one: neither leaves a visible or partial blob, the
// session resumes at its last committed byte, and a fresh retry completes too.
func TestInterruptedUpload(t *testing.T) {
	root := t.TempDir()
	tr := newTestRegistry(t, Config{Root: root})
	data := bytes.Repeat([]byte("berth registry "), 1000) // 15000 bytes
	d := sha(data)

	resp, body := tr.do("POST", "/v2/r/blobs/uploads/", nil)
	expect(t, resp, body, 202, "")
	loc := resp.Header.Get("Location")
	resp, body = tr.do("PATCH", loc, data[:4000], "Content-Range", "0-3999")
	expect(t, resp, body, 202, "")

	// The client sends part of the next chunk and goes away.
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "PATCH", tr.ts.URL+loc, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Range", "4000-14999")
	req.ContentLength = 11000
	done := make(chan error, 1)
	go func() {
		resp, err := tr.ts.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	if _, err := pw.Write(data[4000:6000]); err != nil {
		t.Fatal(err)
	}
	cancel()
	_ = pw.CloseWithError(context.Canceled)
	<-done

	// The server dies. Simulate what a kill during a write leaves: bytes past the committed
	// offset in the session file, a half-written single-request upload in ingest/ and an
	// atomic-write temporary file under blobs/.
	tr.close()
	id := loc[strings.LastIndexByte(loc, '/')+1:]
	f, err := os.OpenFile(filepath.Join(root, uploadsDir, id), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("torn write")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, p := range []string{filepath.Join(root, ingestDir, "blob-123"), filepath.Join(root, blobsDir, algSHA256, ".x.tmp-1")} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	tr = newTestRegistry(t, Config{Root: root})
	resp, body = tr.do("HEAD", "/v2/r/blobs/"+d, nil)
	expect(t, resp, body, 404, "")
	for _, dir := range []string{ingestDir, filepath.Join(blobsDir, algSHA256)} {
		if entries, _ := os.ReadDir(filepath.Join(root, dir)); len(entries) != 0 {
			t.Fatalf("left in %s after restart: %v", dir, entries)
		}
	}
	resp, body = tr.do("GET", loc, nil)
	expect(t, resp, body, 204, "")
	if got := resp.Header.Get("Range"); got != "0-3999" {
		t.Fatalf("resumed at %q, want 0-3999", got)
	}
	// resume and finish
	resp, body = tr.do("PATCH", loc, data[4000:], "Content-Range", "4000-14999")
	expect(t, resp, body, 202, "")
	resp, body = tr.do("PUT", loc+"?digest="+d, nil)
	expect(t, resp, body, 201, "")
	resp, body = tr.do("GET", "/v2/r/blobs/"+d, nil)
	expect(t, resp, body, 200, "")
	if !bytes.Equal(body, data) {
		t.Fatal("resumed blob differs")
	}
	// a client that restarts from scratch succeeds as well
	resp, body = tr.do("POST", "/v2/other/blobs/uploads/?digest="+d, data)
	expect(t, resp, body, 201, "")
}

// TestStaleUploadsExpire checks that recovery drops sessions idle for longer than the TTL and
// upload files no session owns.
func TestStaleUploadsExpire(t *testing.T) {
	root := t.TempDir()
	tr := newTestRegistry(t, Config{Root: root})
	resp, _ := tr.do("POST", "/v2/r/blobs/uploads/", nil)
	loc := resp.Header.Get("Location")
	tr.close()
	orphan := filepath.Join(root, uploadsDir, "11111111-1111-4111-8111-111111111111")
	if err := os.WriteFile(orphan, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := openStore(root, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := st.recover(timeNowPlus(uploadTTL+1), uploadTTL)
	_ = st.close()
	if err != nil || n != 1 {
		t.Fatalf("recover removed %d sessions (%v), want 1", n, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(root, uploadsDir)); len(entries) != 0 {
		t.Fatalf("upload files left: %v", entries)
	}
	tr = newTestRegistry(t, Config{Root: root})
	resp, body := tr.do("GET", loc, nil)
	expect(t, resp, body, 404, codeBlobUploadUnknown)
}

func timeNowPlus(d time.Duration) time.Time { return time.Now().Add(d) }
