// Package schedbench holds the scheduler benchmarks: placement throughput
// at scale and the wall time of one simulated PlanetLab day. It has no
// non-test code; run it through run.sh or `go test -bench`.
package schedbench

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/internal/sched"
	"github.com/berth-dev/berth/internal/sim"
)

// BenchmarkPlace measures one placement on a 5000-node cluster that fills
// up as the benchmark runs (bound placements stay bound).
func BenchmarkPlace(b *testing.B) {
	s := sim.NewScaleSnapshot(5000, 1)
	var p sched.Placer
	w := sched.Workload{Host: -1, MigratingTo: -1, Cores: 1, Request: sched.Resources{CPU: 100, MemoryMB: 256, Slots: 1}}
	pol := sched.PlacePolicy{Seed: 1}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		plan := p.Place(s, &w, pol, uint64(i))
		if plan.Outcome == sched.Placed {
			s.Bind(plan.Host, w.Request, nil)
		}
		if i%1_000_000 == 999_999 { // keep the cluster from filling up for good
			b.StopTimer()
			s = sim.NewScaleSnapshot(5000, 1)
			b.StartTimer()
		}
	}
}

// BenchmarkScale1M places one million mixed tasks on 5000 nodes, the
// `berth sim scale` workload, and reports placements per second.
func BenchmarkScale1M(b *testing.B) {
	const tasks = 1_000_000
	for b.Loop() {
		st, err := sim.RunScale(sim.ScaleConfig{Nodes: 5000, Tasks: tasks, Seed: 1, Policy: sched.PlacePolicy{Seed: 1}}, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(tasks-st.Placed), "unplaced")
	}
	b.ReportMetric(float64(tasks)*float64(b.N)/b.Elapsed().Seconds(), "placements/s")
}

// BenchmarkPlanetLabDay simulates one day of the PlanetLab trace named by
// BERTH_PLANETLAB_DAY (default: ../../../shared/data/planetlab/20110303)
// under BERTH_POLICY (default lr-mmt-1.2).
func BenchmarkPlanetLabDay(b *testing.B) {
	dir := os.Getenv("BERTH_PLANETLAB_DAY")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "data", "planetlab", "20110303")
	}
	traces, err := sim.LoadDay(dir)
	if err != nil {
		b.Skipf("no trace day: %v", err)
	}
	name := os.Getenv("BERTH_POLICY")
	if name == "" {
		name = "lr-mmt-1.2"
	}
	pol, err := sim.ParsePolicy(name, 1)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := sim.RunPlanetLab(traces, pol); err != nil {
			b.Fatal(err)
		}
	}
}
