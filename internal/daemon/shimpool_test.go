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
