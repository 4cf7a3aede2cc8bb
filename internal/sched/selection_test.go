package sched

import (
	"math"
	"math/rand/v2"
	"testing"
)

func snapWith(ws ...Workload) *Snapshot {
	return &Snapshot{Hosts: []Host{{Capacity: Resources{CPU: 5320, MemoryMB: 4096}}}, Workloads: ws}
}

func TestMMT(t *testing.T) {
	s := snapWith(
		Workload{Request: Resources{CPU: 2000, MemoryMB: 1740}},
		Workload{Request: Resources{CPU: 500, MemoryMB: 613}},
		Workload{Request: Resources{CPU: 2500, MemoryMB: 870}},
		Workload{Request: Resources{CPU: 500, MemoryMB: 613}},
	)
	if got := (MMT{}).Select(s, []int{0, 1, 2, 3}, nil); got != 1 {
		t.Fatalf("MMT picked %d, want 1 (least RAM, first of ties)", got)
	}
	if got := (MMT{}).Select(s, []int{3, 2, 1}, nil); got != 0 {
		t.Fatalf("MMT picked position %d, want 0 (workload 3 comes first)", got)
	}
	if got := (MMT{}).Select(s, nil, nil); got != -1 {
		t.Fatalf("MMT on nothing = %d, want -1", got)
	}
}

func TestMU(t *testing.T) {
	s := snapWith(
		Workload{Request: Resources{CPU: 2000}, Demand: 400},  // 0.20
		Workload{Request: Resources{CPU: 500}, Demand: 50},    // 0.10
		Workload{Request: Resources{CPU: 2500}, Demand: 2000}, // 0.80
	)
	if got := (MU{}).Select(s, []int{0, 1, 2}, nil); got != 1 {
		t.Fatalf("MU picked %d, want 1 (utilisation 0.10)", got)
	}
}

func TestRSIsSeeded(t *testing.T) {
	s := snapWith(Workload{}, Workload{}, Workload{}, Workload{})
	c := []int{0, 1, 2, 3}
	a := (RS{}).Select(s, c, rand.New(rand.NewPCG(7, 9)))
	b := (RS{}).Select(s, c, rand.New(rand.NewPCG(7, 9)))
	if a != b {
		t.Fatalf("same seed gave %d and %d", a, b)
	}
	seen := map[int]bool{}
	for i := uint64(0); i < 200; i++ {
		seen[(RS{}).Select(s, c, rand.New(rand.NewPCG(7, i)))] = true
	}
	if len(seen) != 4 {
		t.Fatalf("RS over 200 seeds chose only %v", seen)
	}
}

func TestRSquaredByHand(t *testing.T) {
	// y = 1,2,3,4 on x = 1,2,3,5: Sxy = 6.5, Sxx = 8.75, Syy = 5,
	// R² = 6.5² / (8.75·5) = 0.9657142857...
	r2, ok := rSquared([]float64{1, 2, 3, 4}, [][]float64{{1, 2, 3, 5}})
	if !ok || math.Abs(r2-42.25/43.75) > 1e-12 {
		t.Fatalf("R² = %v, want %v", r2, 42.25/43.75)
	}
	if _, ok := rSquared([]float64{1, 2}, [][]float64{{1, 2}}); ok {
		t.Fatal("2 observations for 2 parameters must be rejected")
	}
}

func TestMC(t *testing.T) {
	// Workloads 0 and 1 move together; 2 is unrelated. MC picks one of the
	// correlated pair, never the unrelated one.
	s := snapWith(
		Workload{Request: Resources{MemoryMB: 900}, History: []float64{1, 2, 3, 4, 5, 6, 7}},
		Workload{Request: Resources{MemoryMB: 900}, History: []float64{1, 2, 3, 4, 5, 6, 8}},
		Workload{Request: Resources{MemoryMB: 100}, History: []float64{5, 1, 4, 1, 5, 9, 2}},
	)
	if got := (MC{}).Select(s, []int{0, 1, 2}, nil); got == 2 || got < 0 {
		t.Fatalf("MC picked %d, want 0 or 1", got)
	}
	// Too little history for the regression: MMT fallback picks the 100 MB one.
	for i := range s.Workloads {
		s.Workloads[i].History = s.Workloads[i].History[:3]
	}
	if got := (MC{}).Select(s, []int{0, 1, 2}, nil); got != 2 {
		t.Fatalf("MC fallback picked %d, want 2 (MMT)", got)
	}
}

func TestParse(t *testing.T) {
	for _, n := range []string{"thr", "iqr", "mad", "lr", "lrr", "ols"} {
		if _, err := ParseDetector(n, 1); err != nil {
			t.Error(err)
		}
	}
	if _, err := ParseDetector("xyz", 1); err == nil {
		t.Error("unknown detector accepted")
	}
	for _, n := range []string{"mmt", "mu", "mc", "rs"} {
		if _, err := ParseSelector(n); err != nil {
			t.Error(err)
		}
	}
	if _, err := ParseSelector("xyz"); err == nil {
		t.Error("unknown selector accepted")
	}
}
