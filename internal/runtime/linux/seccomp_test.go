package linux

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkCompileSeccomp measures compiling Docker's default profile to BPF with libseccomp,
// which the runtime's cache (seccompFor) saves every container but the first.
func BenchmarkCompileSeccomp(b *testing.B) {
	s := DefaultSeccomp()
	if s == nil {
		b.Fatal("no default profile")
	}
	for b.Loop() {
		if _, err := compileSeccompBPF(s); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSeccompCache(t *testing.T) {
	s := DefaultSeccomp()
	if s == nil {
		t.Fatal("no default profile")
	}
	r := &Runtime{Root: t.TempDir()}
	first, err := r.seccompFor(s)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(r.Root, seccompCacheDir))
	if err != nil || len(entries) != 1 {
		t.Fatalf("cache entries: %v, %v", entries, err)
	}
	// The cache directory must never look like a container.
	if err := validateID(seccompCacheDir); err == nil {
		t.Fatalf("%q is a valid container id", seccompCacheDir)
	}
	if ids, err := r.List(t.Context()); err != nil || len(ids) != 0 {
		t.Fatalf("List = %v, %v; want none", ids, err)
	}
	second, err := r.seccompFor(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Program, second.Program) || first.Flags != second.Flags {
		t.Fatal("cached filter differs from the compiled one")
	}
	// A damaged entry is recompiled, not used.
	p := filepath.Join(r.Root, seccompCacheDir, entries[0].Name())
	if err := os.WriteFile(p, []byte("bad"), 0o600); err != nil {
		t.Fatal(err)
	}
	third, err := r.seccompFor(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Program, third.Program) {
		t.Fatal("damaged cache entry was used")
	}
	// A different profile gets its own entry.
	s2 := *s
	s2.DefaultAction = "SCMP_ACT_KILL"
	if _, err := r.seccompFor(&s2); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Join(r.Root, seccompCacheDir)); len(entries) != 2 {
		t.Fatalf("want 2 cache entries, have %d", len(entries))
	}
	prog, err := first.program()
	if err != nil || len(prog.insns) != len(first.Program)/bpfInsnSize {
		t.Fatalf("decode: %v", err)
	}
}
