package sched

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Selector picks which workload to move off an overloaded host. cands are
// workload indices into s.Workloads, in the host's bind order, none of them
// migrating. It returns a position in cands, or -1 to move nothing.
type Selector interface {
	Select(s *Snapshot, cands []int, rng *rand.Rand) int
	// Name is the policy-name form, e.g. "mmt".
	Name() string
}

// MMT (minimum migration time) picks the workload with the least memory,
// which migrates fastest at a fixed bandwidth. Like CloudSim it uses the
// configured memory (Request.MemoryMB), not memory in use; ties go to the
// workload bound earliest.
type MMT struct{}

// Select implements Selector.
func (MMT) Select(s *Snapshot, cands []int, _ *rand.Rand) int {
	best, bestRAM := -1, int64(math.MaxInt64)
	for i, w := range cands {
		if r := s.Workloads[w].Request.MemoryMB; r < bestRAM {
			best, bestRAM = i, r
		}
	}
	return best
}

// Name implements Selector.
func (MMT) Name() string { return "mmt" }

// MU (minimum utilisation) picks the workload with the lowest current
// demand relative to its nominal CPU.
type MU struct{}

// Select implements Selector.
func (MU) Select(s *Snapshot, cands []int, _ *rand.Rand) int {
	best, bestU := -1, math.MaxFloat64
	for i, w := range cands {
		wl := &s.Workloads[w]
		u := 0.0
		if wl.Request.CPU > 0 {
			u = wl.Demand / float64(wl.Request.CPU)
		}
		if u < bestU {
			best, bestU = i, u
		}
	}
	return best
}

// Name implements Selector.
func (MU) Name() string { return "mu" }

// RS (random selection) picks uniformly at random. Unlike CloudSim's
// unseeded java.util.Random, the choice is a function of the policy seed,
// the snapshot epoch and the host, so runs repeat exactly.
type RS struct{}

// Select implements Selector.
func (RS) Select(_ *Snapshot, cands []int, rng *rand.Rand) int {
	if len(cands) == 0 {
		return -1
	}
	return rng.IntN(len(cands))
}

// Name implements Selector.
func (RS) Name() string { return "rs" }

// MC (maximum correlation) picks the workload whose utilisation history is
// best explained (largest R² of an OLS regression) by the histories of the
// other workloads on the host: the one most correlated with the rest adds
// most to the chance of a joint peak. Without enough history for the
// regression it falls back to MMT, as CloudSim does.
type MC struct{}

// Select implements Selector.
func (MC) Select(s *Snapshot, cands []int, rng *rand.Rand) int {
	if len(cands) == 0 {
		return -1
	}
	m := math.MaxInt
	for _, w := range cands {
		m = min(m, len(s.Workloads[w].History))
	}
	n := len(cands)
	if n < 2 {
		return MMT{}.Select(s, cands, rng)
	}
	best, bestR2 := 0, math.SmallestNonzeroFloat64 // CloudSim starts the argmax at Double.MIN_VALUE
	xs := make([][]float64, 0, n-1)
	for i, w := range cands {
		xs = xs[:0]
		for j, o := range cands {
			if j != i {
				xs = append(xs, s.Workloads[o].History[:m])
			}
		}
		r2, ok := rSquared(s.Workloads[w].History[:m], xs)
		if !ok {
			return MMT{}.Select(s, cands, rng)
		}
		if r2 > bestR2 {
			best, bestR2 = i, r2
		}
	}
	return best
}

// Name implements Selector.
func (MC) Name() string { return "mc" }

// ParseDetector turns "thr"/"iqr"/"mad"/"lr"/"lrr"/"ols" and a parameter into
// a Detector.
func ParseDetector(name string, param float64) (Detector, error) {
	switch name {
	case "thr":
		return THR{Threshold: param}, nil
	case "iqr":
		return IQR{S: param}, nil
	case "mad":
		return MADDetector{S: param}, nil
	case "lr":
		return LR{S: param, Mode: RegressionLoess}, nil
	case "lrr":
		return LR{S: param, Mode: RegressionRobust}, nil
	case "ols":
		return LR{S: param, Mode: RegressionOLS}, nil
	}
	return nil, fmt.Errorf("unknown overload detector %q (want thr, iqr, mad, lr, lrr or ols)", name)
}

// ParseSelector turns "mmt"/"mu"/"mc"/"rs" into a Selector.
func ParseSelector(name string) (Selector, error) {
	switch name {
	case "mmt":
		return MMT{}, nil
	case "mu":
		return MU{}, nil
	case "mc":
		return MC{}, nil
	case "rs":
		return RS{}, nil
	}
	return nil, fmt.Errorf("unknown workload selection policy %q (want mmt, mu, mc or rs)", name)
}
