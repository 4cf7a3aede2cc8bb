package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/image"
)

func TestHumanize(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for unix, want := range map[int64]string{
		now.Unix() - 2*3600:   "2 hours ago",
		now.Unix() - 90:       "About a minute ago",
		now.Unix() - 3*86400:  "3 days ago",
		0:                     "N/A",
		now.Unix() - 400*3600: "2 weeks ago",
	} {
		if got := humanDuration(now, unix); got != want {
			t.Errorf("humanDuration(%d) = %q, want %q", now.Unix()-unix, got, want)
		}
	}
	for n, want := range map[int64]string{0: "0B", 999: "999B", 4_261_000: "4.26MB", 1_234_567_890: "1.23GB", 12_345: "12.3kB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
	if got := truncateID("sha256:0123456789abcdef0123"); got != "0123456789ab" {
		t.Errorf("truncateID: %q", got)
	}
	if got := truncateID("<missing>"); got != "<missing>" {
		t.Errorf("truncateID(<missing>): %q", got)
	}
	if got := ellipsis(strings.Repeat("x", 50), 45); got != strings.Repeat("x", 44)+"…" {
		t.Errorf("ellipsis: %q", got)
	}
	if got := ellipsis("short", 45); got != "short" {
		t.Errorf("ellipsis short: %q", got)
	}
}

func testImages() []image.Summary {
	return []image.Summary{
		{ID: "sha256:" + strings.Repeat("a", 64), Created: 1_700_000_000 - 7200, Size: 4_261_000,
			RepoTags: []string{"busybox:latest", "busybox:1.36", "localhost:5000/x/y:v1"}, Containers: -1, SharedSize: -1},
		{ID: "sha256:" + strings.Repeat("b", 64), Created: 1_700_000_000 - 60, Size: 1000, Containers: -1, SharedSize: -1},
		{ID: "sha256:" + strings.Repeat("c", 64), Created: 1_600_000_000, Size: 10,
			RepoDigests: []string{"alpine@sha256:" + strings.Repeat("d", 64)}, Containers: 2, SharedSize: 0},
	}
}

func renderImages(t *testing.T, format string, trunc bool) string {
	t.Helper()
	rows := imageRows(testImages(), trunc, time.Unix(1_700_000_000, 0))
	anyRows := make([]any, len(rows))
	for i, r := range rows {
		anyRows[i] = r
	}
	var buf bytes.Buffer
	if err := (listFormat{format: format, headers: imageHeaders}).write(&buf, anyRows); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestImagesTable(t *testing.T) {
	got := renderImages(t, defaultImageFormat, true)
	want := strings.Join([]string{
		"REPOSITORY           TAG       IMAGE ID       CREATED              SIZE",
		"<none>               <none>    bbbbbbbbbbbb   About a minute ago   1kB",
		"busybox              1.36      aaaaaaaaaaaa   2 hours ago          4.26MB",
		"busybox              latest    aaaaaaaaaaaa   2 hours ago          4.26MB",
		"localhost:5000/x/y   v1        aaaaaaaaaaaa   2 hours ago          4.26MB",
		"alpine               <none>    cccccccccccc   3 years ago          10B",
		"",
	}, "\n")
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	got = renderImages(t, "{{.ID}}", false)
	if !strings.HasPrefix(got, "sha256:bbbb") || strings.Count(got, "\n") != 5 {
		t.Errorf("quiet no-trunc:\n%s", got)
	}
	got = renderImages(t, `table {{.Repository}}\t{{.Digest}}`, true)
	if !strings.Contains(got, "REPOSITORY") || !strings.Contains(got, "DIGEST") || !strings.Contains(got, "sha256:dddd") {
		t.Errorf("digests:\n%s", got)
	}
}

func TestImagesJSON(t *testing.T) {
	for _, format := range []string{"json", "{{json .}}"} {
		out := renderImages(t, format, true)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 5 {
			t.Fatalf("%s: %d lines:\n%s", format, len(lines), out)
		}
		var m map[string]string
		if err := json.Unmarshal([]byte(lines[2]), &m); err != nil {
			t.Fatal(err)
		}
		if m["Repository"] != "busybox" || m["Tag"] != "latest" || m["ID"] != "aaaaaaaaaaaa" || m["Size"] != "4.26MB" || m["Containers"] != "N/A" || m["CreatedSince"] != "2 hours ago" {
			t.Errorf("%s: %v", format, m)
		}
	}
	out := renderImages(t, "{{.Repository}}:{{.Tag}} {{upper .Tag}} {{json .Size}}", true)
	if !strings.Contains(out, "busybox:latest LATEST \"4.26MB\"\n") {
		t.Errorf("template funcs:\n%s", out)
	}
	var buf bytes.Buffer
	if err := (listFormat{format: "{{.Nope"}).write(&buf, nil); err == nil {
		t.Error("bad template accepted")
	}
}

func TestHistoryRows(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	h := image.HistoryResponseItem{ID: "sha256:" + strings.Repeat("e", 64), Created: now.Unix() - 3600, CreatedBy: "/bin/sh -c #(nop)\tCMD [\"sh\"] and a very long tail of text", Size: 4_261_000, Comment: "Imported from -"}
	m := image.HistoryResponseItem{ID: "<missing>", Created: now.Unix() - 3600, CreatedBy: "x", Size: 0}
	var buf bytes.Buffer
	rows := []any{historyRow{h: h, trunc: true, human: true, now: now}, historyRow{h: m, trunc: true, human: true, now: now}}
	if err := (listFormat{format: defaultHistoryFormat, headers: historyHeaders}).write(&buf, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(buf.String(), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "IMAGE ") || !strings.Contains(lines[1], "very long…") || !strings.HasPrefix(lines[2], "<missing>") {
		t.Errorf("history:\n%s", buf.String())
	}
	r := historyRow{h: h, trunc: false, human: false, now: now}
	if r.Size() != "4261000" || r.CreatedSince() != time.Unix(h.Created, 0).Format(time.RFC3339) || r.ID() != h.ID || strings.Contains(r.CreatedBy(), "\t") {
		t.Errorf("non-human row: %s %s %s %q", r.Size(), r.CreatedSince(), r.ID(), r.CreatedBy())
	}
}

func TestEventLine(t *testing.T) {
	m := events.Message{Type: "image", Action: "tag", Actor: events.Actor{ID: "sha256:abc", Attributes: map[string]string{"name": "busybox:latest", "a": "b"}}, TimeNano: time.Date(2024, 1, 2, 3, 4, 5, 6, time.Local).UnixNano()}
	want := time.Date(2024, 1, 2, 3, 4, 5, 6, time.Local).Format(rfc3339NanoFixed) + " image tag sha256:abc (a=b, name=busybox:latest)"
	if got := eventLine(m); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestParseFilterFlags(t *testing.T) {
	f, err := parseFilterFlags([]string{"dangling=true", "label=a=b", "label=c"})
	if err != nil {
		t.Fatal(err)
	}
	if !f["dangling"]["true"] || !f["label"]["a=b"] || !f["label"]["c"] {
		t.Errorf("%v", f)
	}
	if _, err := parseFilterFlags([]string{"nope"}); err == nil {
		t.Error("no error for a filter without =")
	}
}
