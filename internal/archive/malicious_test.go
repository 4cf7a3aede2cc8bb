package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// TestApplyMaliciousCorpus applies hostile layers; each must be confined (nothing outside the
// root changes, the root stays removable) and, where it says so, rejected or land at a given place.
func TestApplyMaliciousCorpus(t *testing.T) {
	type tc struct {
		name string
		ents func(sb *sandbox) []ent
		// wantErr: 1 must fail, 0 must succeed, -1 either.
		wantErr int
		// landed lists paths (relative to root) that must exist afterwards with content "evil".
		landed func(sb *sandbox) []string
	}
	abs := func(sb *sandbox, rel string) string { return filepath.Join(sb.sentinel, rel) }
	inRoot := func(p string) string { return strings.TrimPrefix(p, "/") }
	cases := []tc{
		{name: "dotdot traversal", ents: func(*sandbox) []ent {
			return []ent{reg("../../../../sentinel/file", "evil"), reg("a/../../../../../x", "evil")}
		}, landed: func(*sandbox) []string { return []string{"sentinel/file", "x"} }},
		{name: "absolute path", ents: func(sb *sandbox) []ent {
			return []ent{reg(abs(sb, "file"), "evil"), reg("/etc/berth-archive-test", "evil")}
		}, landed: func(sb *sandbox) []string {
			return []string{inRoot(abs(sb, "file")), "etc/berth-archive-test"}
		}},
		{name: "symlink to / then file through it", ents: func(sb *sandbox) []ent {
			return []ent{symlink("l", "/"), reg("l"+abs(sb, "file"), "evil")}
		}, landed: func(sb *sandbox) []string { return []string{inRoot(abs(sb, "file"))} }},
		{name: "symlink to sentinel dir then file through it", ents: func(sb *sandbox) []ent {
			return []ent{symlink("s", sb.sentinel), reg("s/file", "evil")}
		}, wantErr: -1},
		{name: "relative symlink escaping then file through it", ents: func(*sandbox) []ent {
			return []ent{symlink("s", "../../../../sentinel"), dir("sentinel"), reg("s/file", "evil")}
		}, landed: func(*sandbox) []string { return []string{"sentinel/file"} }},
		{name: "symlink chain", ents: func(*sandbox) []ent {
			return []ent{symlink("a", "b"), symlink("b", "c"), symlink("c", "../../../.."), reg("a/sentinel/file", "evil")}
		}, landed: func(*sandbox) []string { return []string{"sentinel/file"} }},
		{name: "file replaces symlink instead of writing through it", ents: func(sb *sandbox) []ent {
			return []ent{symlink("f", abs(sb, "file")), reg("f", "evil")}
		}, landed: func(*sandbox) []string { return []string{"f"} }},
		{name: "dir replaced by escaping symlink then file", ents: func(sb *sandbox) []ent {
			return []ent{dir("d"), symlink("d", sb.base), reg("d/sentinel/file", "evil")}
		}, wantErr: -1},
		{name: "hardlink to /etc/passwd", ents: func(*sandbox) []ent {
			return []ent{hardlink("pw", "/etc/passwd"), reg("pw", "evil")}
		}, wantErr: 1},
		{name: "hardlink to sentinel by absolute path", ents: func(sb *sandbox) []ent {
			return []ent{hardlink("h", abs(sb, "file")), reg("h", "evil")}
		}, wantErr: 1},
		{name: "hardlink traversal", ents: func(*sandbox) []ent {
			return []ent{hardlink("h", "../../../../sentinel/file")}
		}, wantErr: 1},
		{name: "hardlink through symlink dir", ents: func(sb *sandbox) []ent {
			return []ent{symlink("d", sb.sentinel), hardlink("h", "d/file")}
		}, wantErr: 1},
		{name: "hardlink through relative symlink dir", ents: func(*sandbox) []ent {
			return []ent{symlink("d", "../../../../sentinel"), hardlink("h", "d/file")}
		}, wantErr: 1},
		{name: "hardlink to symlink then overwrite", ents: func(sb *sandbox) []ent {
			return []ent{symlink("s", abs(sb, "file")), hardlink("h", "s"), reg("h", "evil")}
		}, landed: func(*sandbox) []string { return []string{"h"} }},
		{name: "hardlink to itself", ents: func(*sandbox) []ent {
			return []ent{reg("a", "x"), hardlink("a", "a")}
		}, wantErr: 1},
		{name: "whiteout of dotdot", ents: func(*sandbox) []ent {
			return []ent{reg("../.wh.sentinel", ""), reg("../../../../.wh.sentinel", ""), reg("../../../../sentinel/.wh.file", "")}
		}, wantErr: -1},
		{name: "whiteout of absolute path outside", ents: func(sb *sandbox) []ent {
			return []ent{reg(abs(sb, ".wh.file"), ""), reg(sb.base+"/.wh.sentinel", "")}
		}},
		{name: "whiteout through symlink", ents: func(sb *sandbox) []ent {
			return []ent{symlink("s", sb.sentinel), reg("s/.wh.file", ""), symlink("t", "../../../.."), reg("t/.wh.sentinel", ""), reg("t/sentinel/.wh..wh..opq", "")}
		}, wantErr: -1},
		{name: "whiteout named dotdot", ents: func(*sandbox) []ent { return []ent{reg("x/.wh...", "")} }, wantErr: 1},
		{name: "whiteout named dot", ents: func(*sandbox) []ent { return []ent{reg(".wh..", "")} }, wantErr: 1},
		{name: "huge name", ents: func(*sandbox) []ent {
			return []ent{reg(strings.Repeat("a/", 5000)+"f", "evil")}
		}, wantErr: 1},
		{name: "huge component", ents: func(*sandbox) []ent { return []ent{reg(strings.Repeat("a", 300), "evil")} }, wantErr: 1},
		{name: "huge symlink target", ents: func(*sandbox) []ent {
			return []ent{symlink("s", strings.Repeat("../", 3000))}
		}, wantErr: 1},
		{name: "file under a file", ents: func(*sandbox) []ent { return []ent{reg("f", "x"), reg("f/g", "evil")} }, wantErr: 1},
		{name: "replace root with file", ents: func(*sandbox) []ent { return []ent{reg("a/..", "evil")} }, wantErr: 1},
		{name: "root dir entry is ignored", ents: func(*sandbox) []ent {
			return []ent{{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0}}, reg("ok", "evil")}
		}, landed: func(*sandbox) []string { return []string{"ok"} }},
		{name: "negative uid", ents: func(*sandbox) []ent {
			e := reg("f", "x")
			e.hdr.Uid = -5
			return []ent{e}
		}, wantErr: 1},
		{name: "unreadable dir then child", ents: func(*sandbox) []ent {
			d := dir("ro")
			d.hdr.Mode = 0
			return []ent{d, reg("ro/f", "evil")}
		}, landed: func(*sandbox) []string { return []string{"ro/f"} }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, overlay := range []bool{false, true} {
				sb := newSandbox(t)
				passwdBefore := describe(t, "/etc/passwd")
				layer := mkTar(t, c.ents(sb)...)
				_, err := Apply(context.Background(), sb.root, bytes.NewReader(layer), ApplyOptions{Overlay: overlay, NoLchown: true})
				switch {
				case c.wantErr == 1 && err == nil:
					t.Errorf("overlay=%v: want error, got none", overlay)
				case c.wantErr == 0 && err != nil:
					t.Errorf("overlay=%v: unexpected error: %v", overlay, err)
				}
				if err != nil {
					t.Logf("overlay=%v: error (fine): %v", overlay, err)
				}
				if err == nil && c.landed != nil {
					makeRemovable(t, sb.root) // as non-root, "ro" (mode 0) is unreadable even to us
					for _, p := range c.landed(sb) {
						b, rerr := os.ReadFile(filepath.Join(sb.root, p))
						if rerr != nil || string(b) != "evil" {
							t.Errorf("overlay=%v: want %s inside root with the entry's content, got %q, %v", overlay, p, b, rerr)
						}
					}
				}
				if _, serr := os.Lstat("/etc/berth-archive-test"); serr == nil {
					t.Fatal("/etc/berth-archive-test was created outside the root")
				}
				if got := describe(t, "/etc/passwd"); got != passwdBefore {
					t.Fatalf("/etc/passwd changed: %s -> %s", passwdBefore, got)
				}
				sb.check(t, err)
			}
		})
	}
}

func TestApplyMalformed(t *testing.T) {
	good := mkTar(t, dir("d"), reg("d/f", strings.Repeat("content ", 200)), reg("g", "x"))
	badSum := bytes.Clone(good)
	badSum[148] ^= 0x7f // header checksum field
	gz := gzipBytes(t, good)
	corruptGz := bytes.Clone(gz)
	corruptGz[len(corruptGz)/2] ^= 0xff
	corruptGz[len(corruptGz)/2+1] ^= 0xff
	zs := zstdBytes(t, good)
	cases := []struct {
		name, want string
		data       []byte
	}{
		{"truncated in header", "truncated", good[:700]},
		{"truncated in data", "truncated", good[:1100]},
		{"bad header checksum", "malformed tar header", badSum},
		{"garbage", "malformed tar header", bytes.Repeat([]byte("garbage!"), 200)},
		{"truncated gzip", "corrupt gzip stream", gz[:len(gz)/2]},
		{"corrupt gzip", "corrupt gzip stream", corruptGz},
		{"gzip magic only", "corrupt gzip stream", []byte{0x1f, 0x8b}},
		{"truncated zstd", "corrupt zstd stream", zs[:len(zs)-6]},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sb := newSandbox(t)
			_, err := Apply(context.Background(), sb.root, bytes.NewReader(c.data), ApplyOptions{NoLchown: true})
			if err == nil {
				t.Fatal("want error, got none")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("error %q is not ErrInvalidArgument", err)
			}
			sb.check(t, err)
		})
	}
}

// errReader fails like a broken network connection.
type errReader struct{ data []byte }

var errBroken = errors.New("connection reset")

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, errBroken
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestApplySourceErrorIsNotCorruption(t *testing.T) {
	good := mkTar(t, reg("f", strings.Repeat("x", 5000)))
	for name, data := range map[string][]byte{"plain": good[:2000], "gzip": gzipBytes(t, good)[:100]} {
		t.Run(name, func(t *testing.T) {
			_, err := Apply(context.Background(), tempDir(t), &errReader{data: data}, ApplyOptions{NoLchown: true})
			if !errors.Is(err, errBroken) {
				t.Fatalf("want the source error, got %v", err)
			}
			if errdefs.IsInvalidArgument(err) {
				t.Errorf("a source error must not be reported as bad input: %v", err)
			}
		})
	}
}

func TestApplyDeviceNeedsRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("checks the non-root refusal")
	}
	layer := mkTar(t, ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Mode: 0o666, Devmajor: 1, Devminor: 3}})
	_, err := Apply(context.Background(), tempDir(t), bytes.NewReader(layer), ApplyOptions{NoLchown: true})
	if !errdefs.IsPermissionDenied(err) {
		t.Fatalf("want permission denied, got %v", err)
	}
}

func TestApplyContextCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Apply(ctx, tempDir(t), bytes.NewReader(mkTar(t, reg("f", "x"))), ApplyOptions{NoLchown: true})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
}
