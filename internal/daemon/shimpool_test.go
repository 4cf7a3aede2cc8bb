package daemon

import (
	"slices"
	"testing"
)

// BERTH_INIT=go in the daemon's environment must reach the runtime, which runs in the shims.
func TestShimEnvPassesInitChoice(t *testing.T) {
	t.Setenv("BERTH_INIT", "go")
	if !slices.Contains(shimEnv(), "BERTH_INIT=go") {
		t.Fatalf("shim environment %v lacks BERTH_INIT", shimEnv())
	}
}

// At most one no-op cgroup migration starts per primeCgroupsEvery, however many starts ask.
func TestPrimeCgroupsLimit(t *testing.T) {
	d := &Daemon{cfg: Config{ExecRoot: t.TempDir()}}
	d.primeCgroups()
	first := d.lastPrime.Load()
	if first == 0 {
		t.Fatal("no migration started")
	}
	d.primeCgroups()
	if d.lastPrime.Load() != first {
		t.Fatal("a second migration started within the limit")
	}
	d.lastPrime.Store(first - int64(2*primeCgroupsEvery))
	d.primeCgroups()
	if d.lastPrime.Load() == first-int64(2*primeCgroupsEvery) {
		t.Fatal("no migration started after the limit")
	}
}
