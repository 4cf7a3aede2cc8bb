package snapshot

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/berth-dev/berth/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestSplitLowerdir(t *testing.T) {
	for in, want := range map[string][]string{
		"/a":            {"/a"},
		"/a:/b:/c":      {"/a", "/b", "/c"},
		`/we\:ird:/x\\`: {"/we:ird", `/x\`},
	} {
		if got := splitLowerdir(in); !slices.Equal(got, want) {
			t.Errorf("splitLowerdir(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseOptions(t *testing.T) {
	p := parseOptions([]string{"rbind", "ro", "nosuid", "lowerdir=/a:/b", "index=off", "rw"})
	if p.flags != unix.MS_BIND|unix.MS_REC|unix.MS_NOSUID || p.attrs != unix.MOUNT_ATTR_NOSUID {
		t.Errorf("flags %#x attrs %#x", p.flags, p.attrs)
	}
	if !slices.Equal(p.data, []string{"lowerdir=/a:/b", "index=off"}) {
		t.Errorf("data %q", p.data)
	}
}

func TestBindMountReadOnlyAndIdempotentUnmount(t *testing.T) {
	testutil.RequireRoot(t)
	src, target := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := UnmountAll(target); err != nil {
			t.Error(err)
		}
	})
	if err := MountAll([]Mount{{Type: "bind", Source: src, Options: []string{"rbind", "ro"}}}, target); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "f")); err != nil || string(b) != "x" {
		t.Fatalf("bind content: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(target, "g"), nil, 0o644); err == nil {
		t.Error("write to a ro bind mount succeeded")
	}
	// Stack a second mount, then unmount both with one call, twice.
	if err := MountAll([]Mount{{Type: "bind", Source: src, Options: []string{"rbind", "rw"}}}, target); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := UnmountAll(target); err != nil {
			t.Fatal(err)
		}
	}
	if testutil.Mounted(t, target) {
		t.Error("still mounted after UnmountAll")
	}
	if err := UnmountAll(filepath.Join(target, "does-not-exist")); err != nil {
		t.Errorf("UnmountAll of a missing path: %v", err)
	}
	// DetachAll takes a stack off in one call too, with a user still in it.
	for range 2 {
		if err := MountAll([]Mount{{Type: "bind", Source: src, Options: []string{"rbind"}}}, target); err != nil {
			t.Fatal(err)
		}
	}
	busy, err := os.Open(filepath.Join(target, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for range 2 {
		if err := DetachAll(target); err != nil {
			t.Fatal(err)
		}
	}
	if testutil.Mounted(t, target) {
		t.Error("still mounted after DetachAll")
	}
}

func TestMountAllFailureLeavesNothing(t *testing.T) {
	testutil.RequireRoot(t)
	src, target := t.TempDir(), t.TempDir()
	t.Cleanup(func() { _ = UnmountAll(target) })
	err := MountAll([]Mount{
		{Type: "bind", Source: src, Options: []string{"rbind"}},
		{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + filepath.Join(src, "missing")}},
	}, target)
	if err == nil {
		t.Fatal("want error")
	}
	if testutil.Mounted(t, target) {
		t.Error("first mount left behind after a failed MountAll")
	}
}

func TestEscapeLowerdir(t *testing.T) {
	for _, p := range []string{"/a/b", `/we:ird\path`, "/x::y"} {
		if got := SplitLowerdir(EscapeLowerdir(p) + ":" + EscapeLowerdir("/z")); !slices.Equal(got, []string{p, "/z"}) {
			t.Errorf("%q round-trips to %q", p, got)
		}
	}
}
