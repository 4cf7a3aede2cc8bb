package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/berth-dev/berth/internal/sched"
	"github.com/containerd/errdefs"
)

// ScaleConfig describes a synthetic placement run.
type ScaleConfig struct {
	Nodes, Tasks int
	Seed         uint64
	Policy       sched.PlacePolicy
}

// ScaleStats are the counts from a scale run; timing is the caller's (the
// engine reads no clock), which it measures through the Timer.
type ScaleStats struct {
	Placed, Queued, Refused, NoFit int
}

// Timer lets the command layer time each placement without this package
// reading the clock. Start returns a token that Stop turns into nanoseconds.
type Timer interface {
	Start() int64
	Stop(start int64) int64
}

// Limits on a scale run, so that a typo cannot exhaust memory: the command
// keeps one latency sample per task.
const (
	MaxScaleNodes = 1_000_000
	MaxScaleTasks = 50_000_000
)

// Scale node shapes: heterogeneous hosts (cores, GiB, pods).
var scaleNodeTypes = [...]struct {
	milli, memMB, slots int64
}{
	{32_000, 128 << 10, 200},
	{64_000, 256 << 10, 300},
	{96_000, 384 << 10, 400},
}

// Scale task shapes and their weights (percent): many small services, a
// few large ones.
var scaleTaskTypes = [...]struct {
	milli, memMB int64
	weight       int
}{
	{50, 128, 30}, {100, 256, 30}, {200, 512, 20}, {500, 1024, 15}, {1000, 2048, 4}, {2000, 4096, 1},
}

// NewScaleSnapshot builds the host set for a scale run.
func NewScaleSnapshot(nodes int, seed uint64) *sched.Snapshot {
	rng := rand.New(rand.NewPCG(seed, 1))
	s := &sched.Snapshot{Hosts: make([]sched.Host, nodes)}
	for i := range s.Hosts {
		t := scaleNodeTypes[rng.IntN(len(scaleNodeTypes))]
		pm := sched.PowerHPProLiantML110G5()
		if i%2 == 0 {
			pm = sched.PowerHPProLiantML110G4()
		}
		s.Hosts[i] = sched.Host{
			Capacity: sched.Resources{CPU: t.milli, MemoryMB: t.memMB, Slots: t.slots},
			CoreCPU:  4000,
			Power:    pm,
		}
	}
	s.Recount()
	return s
}

// RunScale places cfg.Tasks tasks with mixed requests onto cfg.Nodes hosts
// through sched's placement pipeline, binding each placed task. latencies
// receives each placement's duration in nanoseconds (it must have room for
// cfg.Tasks entries) when timer is non-nil.
func RunScale(cfg ScaleConfig, timer Timer, latencies []int64) (ScaleStats, error) {
	if cfg.Nodes < 1 {
		return ScaleStats{}, fmt.Errorf("--nodes %d: need at least 1 node: %w", cfg.Nodes, errdefs.ErrInvalidArgument)
	}
	if cfg.Nodes > MaxScaleNodes {
		return ScaleStats{}, fmt.Errorf("--nodes %d: at most %d simulated hosts are supported: %w", cfg.Nodes, MaxScaleNodes, errdefs.ErrInvalidArgument)
	}
	if cfg.Tasks < 0 || cfg.Tasks > MaxScaleTasks {
		return ScaleStats{}, fmt.Errorf("--tasks %d: must be from 0 to %d: %w", cfg.Tasks, MaxScaleTasks, errdefs.ErrInvalidArgument)
	}
	s := NewScaleSnapshot(cfg.Nodes, cfg.Seed)
	rng := rand.New(rand.NewPCG(cfg.Seed, 2))
	cum := make([]int, len(scaleTaskTypes))
	total := 0
	for i, t := range scaleTaskTypes {
		total += t.weight
		cum[i] = total
	}
	var st ScaleStats
	var p sched.Placer
	w := sched.Workload{Host: -1, Cores: 1, MigratingTo: -1}
	for i := 0; i < cfg.Tasks; i++ {
		r := rng.IntN(total)
		k, _ := slices.BinarySearch(cum, r+1)
		tt := scaleTaskTypes[k]
		w.Request = sched.Resources{CPU: tt.milli, MemoryMB: tt.memMB, Slots: 1}
		var t0 int64
		if timer != nil {
			t0 = timer.Start()
		}
		plan := p.Place(s, &w, cfg.Policy, uint64(i))
		if plan.Outcome == sched.Placed {
			s.Bind(plan.Host, w.Request, nil)
		}
		if timer != nil {
			latencies[i] = timer.Stop(t0)
		}
		switch plan.Outcome {
		case sched.Placed:
			st.Placed++
		case sched.Queued:
			st.Queued++
		case sched.Refused:
			st.Refused++
		default:
			st.NoFit++
		}
	}
	return st, nil
}
