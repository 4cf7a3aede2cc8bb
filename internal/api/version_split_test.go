package api

import "testing"

func TestSplitVersion(t *testing.T) {
	for _, tc := range []struct {
		in, v, rest string
		ok          bool
	}{
		{"/v1.51/containers/json", "1.51", "/containers/json", true},
		{"/v1.24/_ping", "1.24", "/_ping", true},
		{"/v10.0/", "10.0", "/", true},
		{"/v1.51", "", "", false},
		{"/v1/containers", "", "", false},
		{"/v1.x/containers", "", "", false},
		{"/v.1/containers", "", "", false},
		{"/v1./containers", "", "", false},
		{"/containers/json", "", "", false},
		{"/volumes", "", "", false},
	} {
		v, rest, ok := splitVersion(tc.in)
		if v != tc.v || rest != tc.rest || ok != tc.ok {
			t.Errorf("splitVersion(%q) = %q, %q, %v; want %q, %q, %v", tc.in, v, rest, ok, tc.v, tc.rest, tc.ok)
		}
	}
}
