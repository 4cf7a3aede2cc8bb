package cli

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// The lazily built tree (commandTree) must behave as the whole tree: every name and alias of
// the root's subcommands makes the same command, and every command's help and flag errors
// read the same.
func TestLazyTreeMatchesFullTree(t *testing.T) {
	c := &cli{in: strings.NewReader(""), out: &bytes.Buffer{}, err: &bytes.Buffer{}}
	full := c.newRootCommand()
	if n := len(full.Commands()); n != len(strings.Fields(topCommandNames)) {
		t.Fatalf("%d top-level commands, %d names", n, len(strings.Fields(topCommandNames)))
	}
	for _, cmd := range full.Commands() {
		for _, name := range append([]string{cmd.Name()}, cmd.Aliases...) {
			lazy := c.topCommand(name)
			if lazy == nil {
				t.Errorf("topCommand(%q) = nil", name)
				continue
			}
			if lazy.Use != cmd.Use || lazy.Short != cmd.Short || !slices.Equal(lazy.Aliases, cmd.Aliases) {
				t.Errorf("topCommand(%q) = %q %q %v, want %q %q %v", name, lazy.Use, lazy.Short, lazy.Aliases, cmd.Use, cmd.Short, cmd.Aliases)
			}
		}
	}

	run := func(args []string, whole bool) (int, string, string) {
		var out, errOut bytes.Buffer
		c := &cli{in: strings.NewReader(""), out: &out, err: &errOut}
		var code int
		if whole {
			code = c.execute(c.newRootCommand(), args)
		} else {
			code = c.run(args)
		}
		return code, out.String(), errOut.String()
	}
	var walk func(cmd *cobra.Command, path []string)
	walk = func(cmd *cobra.Command, path []string) {
		for _, sub := range cmd.Commands() {
			p := append(slices.Clone(path), sub.Name())
			for _, args := range [][]string{
				append(slices.Clone(p), "--help"),
				append(slices.Clone(p), "--no-such-flag"),
				append([]string{"-H", "unix:///nonexistent.sock", "--log-level=debug"}, append(slices.Clone(p), "--help")...),
			} {
				wc, wo, we := run(args, true)
				lc, lo, le := run(args, false)
				if wc != lc || wo != lo || we != le {
					t.Errorf("%q: whole tree %d %q %q, lazy %d %q %q", args, wc, wo, we, lc, lo, le)
				}
			}
			walk(sub, p)
		}
	}
	walk(full, nil)
	for _, args := range [][]string{{"--version"}, {"-v"}, {"-H", "unix:///x.sock", "--version"}, {"--version", "run"}, {}, {"--help"}, {"help", "run"}, {"rnu"}, {"--tls", "true"}} {
		wc, wo, we := run(args, true)
		lc, lo, le := run(args, false)
		if wc != lc || wo != lo || we != le {
			t.Errorf("%q: whole tree %d %q %q, lazy %d %q %q", args, wc, wo, we, lc, lo, le)
		}
	}
}

func TestScanGlobalArgs(t *testing.T) {
	c := &cli{}
	root := c.newRoot()
	for _, tc := range []struct {
		args    []string
		verb    string
		version bool
		ok      bool
	}{
		{[]string{"run", "--rm", "busybox"}, "run", false, true},
		{[]string{"-H", "unix:///x.sock", "run"}, "run", false, true},
		{[]string{"-Hunix:///x.sock", "--tls", "--tlscert", "c.pem", "--log-level=debug", "ps"}, "ps", false, true},
		{[]string{"--host", "run", "ps"}, "ps", false, true},
		{[]string{"--version"}, "", true, true},
		{[]string{"-l", "debug", "-v"}, "", true, true},
		{[]string{"--version", "run"}, "", false, false},
		{[]string{"--help", "run"}, "", false, false},
		{[]string{"-h"}, "", false, false},
		{[]string{"--bogus", "run"}, "", false, false},
		{[]string{"-H"}, "", false, false},
		{[]string{}, "", false, true},
	} {
		verb, version, ok := scanGlobalArgs(root, tc.args)
		if verb != tc.verb || version != tc.version || ok != tc.ok {
			t.Errorf("%q: %q %v %v, want %q %v %v", tc.args, verb, version, ok, tc.verb, tc.version, tc.ok)
		}
	}
}
