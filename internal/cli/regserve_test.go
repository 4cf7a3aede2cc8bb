package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestRegistryCommands(t *testing.T) {
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		c := &cli{in: strings.NewReader(""), out: &out, err: &errOut}
		return c.run(args), out.String(), errOut.String()
	}
	root := t.TempDir()
	if code, out, errOut := run("registry", "garbage-collect", "--root", root, "--dry-run"); code != 0 ||
		!strings.Contains(out, "would delete 0 manifests, 0 blob links, 0 blobs (0 bytes)") {
		t.Fatalf("gc dry run: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := run("registry", "gc", "--root", root); code != 0 || !strings.HasPrefix(out, "deleted 0 manifests") {
		t.Fatalf("gc: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := run("registry", "serve", "--log-level", "bogus"); code != exitUsage || !strings.Contains(errOut, `invalid --log-level "bogus"`) {
		t.Fatalf("bad log level: %d %q", code, errOut)
	}
	if code, _, errOut := run("registry", "serve", "--nope"); code != exitUsage || !strings.Contains(errOut, "unknown flag: --nope") {
		t.Fatalf("bad flag: %d %q", code, errOut)
	}
	if code, _, errOut := run("registry", "serve", "--root", root, "--tls-cert", "x"); code != exitError || !strings.Contains(errOut, "--tls-cert and --tls-key must be given together") {
		t.Fatalf("half TLS: %d %q", code, errOut)
	}
}
