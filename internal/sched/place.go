package sched

import (
	"math"
	"math/rand/v2"
)

// Scoring selects the ranking stage of the placement pipeline.
type Scoring uint8

const (
	// BinPack prefers the host that is most allocated after placement (best
	// fit): it keeps whole hosts free for large workloads and for standby.
	BinPack Scoring = iota
	// Spread prefers the least allocated host: it evens out load.
	Spread
	// PowerAware prefers the host whose power draw rises least (PABFD's
	// criterion). Waking a standby host costs its idle power.
	PowerAware
)

// Outcome is what happened to a placement request.
type Outcome uint8

const (
	// Placed: the plan names a host.
	Placed Outcome = iota
	// Queued: admission control deferred the workload; retry later.
	Queued
	// Refused: admission control turned the workload away.
	Refused
	// NoFit: no host passed the feasibility checks.
	NoFit
)

func (o Outcome) String() string {
	switch o {
	case Placed:
		return "placed"
	case Queued:
		return "queued"
	case Refused:
		return "refused"
	}
	return "no-fit"
}

// DefaultAdmissionThreshold is the projected cluster load above which new
// work is refused or queued.
const DefaultAdmissionThreshold = 0.8

// DefaultLimit is how many feasible candidates are scored per placement when
// PlacePolicy.Limit is 0. Scoring a handful of random feasible hosts gets
// close to the best choice at a fraction of the cost of scoring all of them
// (the "power of d choices"); Nomad uses the same idea.
const DefaultLimit = 8

// PlacePolicy configures Place.
type PlacePolicy struct {
	Scoring Scoring
	// Limit bounds the feasible candidates scored; 0 means DefaultLimit, a
	// negative value scores every feasible host.
	Limit int
	// Seed makes the random host order repeatable.
	Seed uint64
	// AdmissionThreshold is the projected cluster load (the largest of the
	// CPU, memory and slot fractions after admitting the request) above which the
	// request is not admitted. 0 means DefaultAdmissionThreshold; a value
	// ≥ 1 effectively turns admission control off.
	AdmissionThreshold float64
	// Queue makes admission control queue instead of refuse.
	Queue bool
	// NoStandby keeps placement off standby hosts.
	NoStandby bool
}

// Request asks for one workload to be placed.
type Request struct {
	Workload Workload
	Policy   PlacePolicy
	// Seq distinguishes requests for seeding: the same (Seed, Seq) yields the
	// same host order.
	Seq uint64
}

// Plan is the result of placing one workload.
type Plan struct {
	Outcome Outcome
	// Host is the chosen host index, or -1.
	Host  int
	Score float64
	// Reason explains a non-Placed outcome; constant strings only.
	Reason string
	// Scored is how many feasible hosts were ranked.
	Scored int
}

// Place runs the placement pipeline for one request against the snapshot.
// It does not modify the snapshot: on Placed, the caller binds the workload
// (Snapshot.Bind) if it accepts the plan.
func Place(s *Snapshot, r Request) Plan {
	var p Placer
	return p.Place(s, &r.Workload, r.Policy, r.Seq)
}

// Placer runs the placement pipeline and reuses its buffers between calls,
// so steady-state placement does not allocate. A Placer is not safe for
// concurrent use; its results are the same as Place's.
type Placer struct {
	order  RandomOrder
	feas   FeasibilityStage
	checks [4]Check
}

// Place is Place with reused buffers.
func (p *Placer) Place(s *Snapshot, w *Workload, pol PlacePolicy, seq uint64) Plan {
	if reason, ok := Admit(s, w, pol); !ok {
		if pol.Queue {
			return Plan{Outcome: Queued, Host: -1, Reason: reason}
		}
		return Plan{Outcome: Refused, Host: -1, Reason: reason}
	}
	// Stage 1: a seeded random permutation of the hosts.
	p.order.Reset(len(s.Hosts), pol.Seed, seq)
	// Stage 2: feasibility. Only the checks this workload needs are chained.
	checks := p.checks[:0]
	checks = append(checks, ResourceFit{NoStandby: pol.NoStandby})
	if len(w.Constraints) > 0 {
		checks = append(checks, HostLabels{})
	}
	if len(w.AntiAffinity) > 0 {
		checks = append(checks, AntiAffinity{})
	}
	if len(w.Affinity) > 0 {
		checks = append(checks, Affinity{})
	}
	p.feas = FeasibilityStage{Source: &p.order, Checks: checks, Snapshot: s, Workload: w}
	// Stages 3 and 4: rank and limit.
	limit := pol.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	best, bestScore, scored := -1, math.Inf(-1), 0
	for limit < 0 || scored < limit {
		h, ok := p.feas.Next()
		if !ok {
			break
		}
		sc := Score(pol.Scoring, &s.Hosts[h], w)
		scored++
		if sc > bestScore {
			best, bestScore = h, sc
		}
	}
	if best < 0 {
		return Plan{Outcome: NoFit, Host: -1, Reason: "no host has room for the request or meets its constraints"}
	}
	return Plan{Outcome: Placed, Host: best, Score: bestScore, Scored: scored}
}

// Admit is admission control: it refuses when the projected cluster load
// (the largest of the CPU, memory and slot allocation fractions with the
// request admitted) would go over the threshold. A cluster already at the threshold
// therefore admits nothing more; one below it admits any request that keeps
// it at or below the threshold.
func Admit(s *Snapshot, w *Workload, pol PlacePolicy) (reason string, ok bool) {
	th := pol.AdmissionThreshold
	if th == 0 {
		th = DefaultAdmissionThreshold
	}
	capacity, alloc := s.Totals()
	proj := alloc.Add(w.Request)
	load := 0.0
	if capacity.CPU > 0 {
		load = float64(proj.CPU) / float64(capacity.CPU)
	}
	if capacity.MemoryMB > 0 {
		load = max(load, float64(proj.MemoryMB)/float64(capacity.MemoryMB))
	}
	if capacity.Slots > 0 {
		load = max(load, float64(proj.Slots)/float64(capacity.Slots))
	}
	if load > th {
		return "projected cluster load would exceed the admission threshold", false
	}
	return "", true
}

// RandomOrder visits 0..n-1 in a seeded pseudo-random order without building
// a permutation: a random start and a random stride coprime with n.
type RandomOrder struct {
	n, start, stride, i int
}

// Reset starts a new order for n hosts.
func (o *RandomOrder) Reset(n int, seed, seq uint64) {
	o.n, o.i = n, 0
	if n == 0 {
		return
	}
	// splitmix-style mixing so neighbouring seq values give unrelated orders.
	var pcg rand.PCG
	pcg.Seed(seed, seq*0x9e3779b97f4a7c15+0xbf58476d1ce4e5b9)
	r := pcg.Uint64()
	o.start = int(r % uint64(n))
	o.stride = 1
	if n > 2 {
		o.stride = 1 + int((r>>32)%uint64(n-1))
		for gcd(o.stride, n) != 1 {
			o.stride++
			if o.stride >= n {
				o.stride = 1
			}
		}
	}
}

// Next returns the next host index.
func (o *RandomOrder) Next() (int, bool) {
	if o.i >= o.n {
		return 0, false
	}
	h := (o.start + o.i*o.stride) % o.n
	o.i++
	return h, true
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Check is one feasibility test.
type Check interface {
	Feasible(h *Host, w *Workload) bool
}

// FeasibilityStage passes on the hosts from Source that pass every check.
type FeasibilityStage struct {
	Source   *RandomOrder
	Checks   []Check
	Snapshot *Snapshot
	Workload *Workload
}

// Next returns the next feasible host.
func (f *FeasibilityStage) Next() (int, bool) {
next:
	for {
		h, ok := f.Source.Next()
		if !ok {
			return 0, false
		}
		host := &f.Snapshot.Hosts[h]
		for _, c := range f.Checks {
			if !c.Feasible(host, f.Workload) {
				continue next
			}
		}
		return h, true
	}
}

// ResourceFit checks CPU, memory, slots and the per-core limit.
type ResourceFit struct{ NoStandby bool }

// Feasible implements Check.
func (r ResourceFit) Feasible(h *Host, w *Workload) bool {
	if r.NoStandby && h.Standby {
		return false
	}
	c, a, q := &h.Capacity, &h.Allocated, &w.Request
	if a.CPU+q.CPU > c.CPU || a.MemoryMB+q.MemoryMB > c.MemoryMB {
		return false
	}
	if c.Slots > 0 && a.Slots+max(q.Slots, 1) > c.Slots {
		return false
	}
	if h.CoreCPU > 0 && q.CPU > h.CoreCPU*int64(max(w.Cores, 1)) {
		return false
	}
	return true
}

// HostLabels checks the workload's label constraints.
type HostLabels struct{}

// Feasible implements Check.
func (HostLabels) Feasible(h *Host, w *Workload) bool {
	for _, c := range w.Constraints {
		if h.Labels[c.Key] != c.Value {
			return false
		}
	}
	return true
}

// AntiAffinity rejects hosts that already run a workload with any of the
// listed tags.
type AntiAffinity struct{}

// Feasible implements Check.
func (AntiAffinity) Feasible(h *Host, w *Workload) bool {
	for _, t := range w.AntiAffinity {
		if h.Tags[t] > 0 {
			return false
		}
	}
	return true
}

// Affinity requires a host that already runs a workload with one of the
// listed tags.
type Affinity struct{}

// Feasible implements Check.
func (Affinity) Feasible(h *Host, w *Workload) bool {
	for _, t := range w.Affinity {
		if h.Tags[t] > 0 {
			return true
		}
	}
	return false
}

// Score ranks a feasible host for a workload; higher is better.
func Score(s Scoring, h *Host, w *Workload) float64 {
	c, a, q := &h.Capacity, &h.Allocated, &w.Request
	cpu := frac(a.CPU+q.CPU, c.CPU)
	mem := frac(a.MemoryMB+q.MemoryMB, c.MemoryMB)
	switch s {
	case Spread:
		return 1 - (cpu+mem)/2
	case PowerAware:
		before := 0.0 // an empty host is asleep and draws nothing
		if a.CPU > 0 || a.MemoryMB > 0 || a.Slots > 0 {
			before = hostPower(h, frac(a.CPU, c.CPU))
		}
		return -(hostPower(h, cpu) - before)
	}
	return (cpu + mem) / 2
}

func hostPower(h *Host, u float64) float64 {
	if h.Power != nil {
		return h.Power.Power(u)
	}
	return min(max(u, 0), 1)
}

func frac(a, b int64) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}
