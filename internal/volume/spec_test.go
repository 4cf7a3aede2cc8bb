package volume

import (
	"strings"
	"testing"

	"github.com/moby/moby/api/types/mount"
)

func TestParseVolumeFlag(t *testing.T) {
	for _, tc := range []struct {
		in       string
		typ      mount.Type
		src, dst string
		ro       bool
		prop     mount.Propagation
		nocopy   bool
	}{
		{in: "/data", typ: mount.TypeVolume, dst: "/data"},
		{in: "vol:/data", typ: mount.TypeVolume, src: "vol", dst: "/data"},
		{in: "vol:/data:ro", typ: mount.TypeVolume, src: "vol", dst: "/data", ro: true},
		{in: "vol:/data:nocopy,rw", typ: mount.TypeVolume, src: "vol", dst: "/data", nocopy: true},
		{in: "/host/x/../y:/data", typ: mount.TypeBind, src: "/host/y", dst: "/data"},
		{in: "/host:/data:ro,rshared", typ: mount.TypeBind, src: "/host", dst: "/data", ro: true, prop: mount.PropagationRShared},
		{in: "/host:/data:z", typ: mount.TypeBind, src: "/host", dst: "/data"},
	} {
		s, err := ParseVolumeFlag(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if s.Type != tc.typ || s.Source != tc.src || s.Target != tc.dst || s.ReadOnly != tc.ro {
			t.Errorf("%q: got %+v", tc.in, s)
		}
		if tc.prop != "" && (s.BindOptions == nil || s.BindOptions.Propagation != tc.prop) {
			t.Errorf("%q: propagation %+v", tc.in, s.BindOptions)
		}
		if tc.nocopy != (s.VolumeOptions != nil && s.VolumeOptions.NoCopy) {
			t.Errorf("%q: nocopy %+v", tc.in, s.VolumeOptions)
		}
		if tc.typ == mount.TypeBind && !s.CreateSource {
			t.Errorf("%q: -v binds create their source", tc.in)
		}
	}
}

func TestParseVolumeFlagErrors(t *testing.T) {
	for in, want := range map[string]string{
		"":                     "empty",
		"data":                 "absolute",
		"vol:data":             "absolute",
		"vol:/":                "cannot be",
		"a:b:c:d":              "too many colons",
		"./rel:/data":          "invalid characters",
		"vol:/data:ro,rw":      "twice",
		"vol:/data:bogus":      "unknown mode",
		"vol:/data:rshared":    "bind mounts only",
		"/host:/data:nocopy":   "volumes only",
		":/data":               "source is empty",
		"/h:/d:rprivate,slave": "propagation twice",
	} {
		_, err := ParseVolumeFlag(in)
		if err == nil {
			t.Errorf("%q: no error", in)
			continue
		}
		if !strings.Contains(err.Error(), "-v/--volume") || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %q should name the flag and say %q", in, err, want)
		}
	}
}

func TestParseMountFlag(t *testing.T) {
	m, err := ParseMountFlag("type=bind,source=/src,target=/dst,readonly,bind-propagation=rslave")
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != mount.TypeBind || m.Source != "/src" || m.Target != "/dst" || !m.ReadOnly || m.BindOptions.Propagation != mount.PropagationRSlave {
		t.Errorf("bind: %+v", m)
	}
	m, err = ParseMountFlag("src=vol,dst=/data,volume-nocopy,volume-label=a=b,ro=false")
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != mount.TypeVolume || m.Source != "vol" || m.ReadOnly || !m.VolumeOptions.NoCopy || m.VolumeOptions.Labels["a"] != "b" {
		t.Errorf("volume: %+v", m)
	}
	m, err = ParseMountFlag("type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1770")
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != mount.TypeTmpfs || m.TmpfsOptions.SizeBytes != 64<<20 || m.TmpfsOptions.Mode != 0o1770 {
		t.Errorf("tmpfs: %+v", m)
	}
	// An anonymous volume.
	if m, err = ParseMountFlag("target=/anon"); err != nil || m.Source != "" || m.Type != mount.TypeVolume {
		t.Errorf("anonymous: %+v %v", m, err)
	}
	// A relative bind source is left for the CLI to resolve; ValidateMount refuses it.
	m, err = ParseMountFlag("type=bind,src=./x,dst=/x")
	if err != nil {
		t.Fatal(err)
	}
	if ValidateMount(m) == nil {
		t.Error("ValidateMount accepted a relative bind source")
	}
}

func TestParseMountFlagErrors(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "empty",
		"type=bind,target=/x":     "needs a source",
		"type=volume,src=vol":     "destination",
		"type=tmpfs,src=x,dst=/t": "no source",
		"type=nfs,dst=/t":         "not supported",
		"dst=/t,bogus=1":          "unknown option",
		"type=volume,dst=/t,bind-propagation=rshared": "type=bind only",
		"type=bind,src=/a,dst=/t,volume-nocopy":       "type=volume only",
		"type=volume,dst=/t,tmpfs-size=1m":            "type=tmpfs only",
		"type=tmpfs,dst=/t,tmpfs-size=huge":           "tmpfs-size",
		"type=tmpfs,dst=/t,tmpfs-mode=999":            "tmpfs-mode",
		"type=bind,src=/a,dst=/t,bind-propagation=x":  "bind-propagation",
		"dst=/t,readonly=maybe":                       "true or false",
		"src=bad/name,dst=/t":                         "invalid characters",
		"type=volume,dst=/t,volume-driver=nfs":        "not supported",
		"target":                                      "needs a value",
	} {
		_, err := ParseMountFlag(in)
		if err == nil {
			t.Errorf("%q: no error", in)
			continue
		}
		if !strings.Contains(err.Error(), "--mount") || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %q should name the flag and say %q", in, err, want)
		}
	}
}

func TestParseVolumesFrom(t *testing.T) {
	if c, m, err := ParseVolumesFrom("web:ro"); err != nil || c != "web" || m != "ro" {
		t.Errorf("got %q %q %v", c, m, err)
	}
	if _, _, err := ParseVolumesFrom("web:rx"); err == nil || !strings.Contains(err.Error(), "--volumes-from") {
		t.Errorf("bad mode: %v", err)
	}
	if _, _, err := ParseVolumesFrom(""); err == nil {
		t.Error("empty accepted")
	}
}

// FuzzParseVolumeFlag and FuzzParseMountFlag feed arbitrary user input to the parsers: they
// must not panic, and what they accept must be a valid mount.
func FuzzParseVolumeFlag(f *testing.F) {
	for _, s := range []string{"/data", "vol:/data:ro", "/h:/c:rshared,ro,z", "a:b:c:d", ":", "vol:/data:nocopy"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseVolumeFlag(in)
		if err != nil {
			return
		}
		if s.Type == mount.TypeBind {
			if err := ValidateMount(s.Mount); err != nil {
				t.Fatalf("%q accepted but invalid: %v", in, err)
			}
		}
		if s.Target == "" || s.Target[0] != '/' {
			t.Fatalf("%q: accepted target %q", in, s.Target)
		}
	})
}

func FuzzParseMountFlag(f *testing.F) {
	for _, s := range []string{
		"type=bind,src=/a,dst=/b,ro,bind-propagation=rshared",
		"type=volume,source=v,target=/d,volume-nocopy,volume-label=x=y",
		"type=tmpfs,dst=/t,tmpfs-size=1g,tmpfs-mode=1777",
		`"type=bind","src=/a,b",dst=/c`,
		"dst=/x,\"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		m, err := ParseMountFlag(in)
		if err != nil {
			return
		}
		if m.Type == mount.TypeBind && !strings.HasPrefix(m.Source, "/") {
			return // relative: the CLI resolves it
		}
		if err := ValidateMount(m); err != nil {
			t.Fatalf("%q accepted but invalid: %v", in, err)
		}
	})
}
