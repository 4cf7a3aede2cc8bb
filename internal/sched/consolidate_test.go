package sched

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
)

func g5(name string, metered float64) Host {
	return Host{Name: name, Capacity: Resources{CPU: 5320, MemoryMB: 4096}, CoreCPU: 2660,
		Power: PowerHPProLiantML110G5(), MeteredCPU: metered}
}

// TestRebalanceCapturedPlan checks a plan worked out by hand. h0 asks for
// 4400/5320 = 0.83 > 0.8, so MMT moves w1 (613 MB). PABFD compares h1
// (P(0.639) − P(0.188) = 122.56 − 100.52 = 22.04 W) with the empty h2
// (P(0.451) − P(0) = 113.06 − 93.7 = 19.36 W) and picks h2. The underload
// phase then tries to empty h1, but every other host is excluded
// (overloaded, switched off, or the source itself), so nothing more moves.
func TestRebalanceCapturedPlan(t *testing.T) {
	s := &Snapshot{
		Hosts: []Host{g5("h0", 4400), g5("h1", 1000), g5("h2", 0)},
		Workloads: []Workload{
			{Name: "w0", Host: 0, MigratingTo: -1, Cores: 1, Request: Resources{CPU: 2000, MemoryMB: 1740}, Demand: 2000},
			{Name: "w1", Host: 0, MigratingTo: -1, Cores: 1, Request: Resources{CPU: 2500, MemoryMB: 613}, Demand: 2400},
			{Name: "w2", Host: 1, MigratingTo: -1, Cores: 1, Request: Resources{CPU: 1000, MemoryMB: 870}, Demand: 1000},
		},
	}
	got := Rebalance(s, ConsolidationPolicy{Detector: THR{0.8}, Selector: MMT{}})
	want := []Migration{{Workload: 1, From: 0, To: 2, Reason: "overload"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plan = %+v, want %+v", got, want)
	}
	// With a fourth, lightly loaded host, h1 (the least utilised) is
	// emptied onto it: the underload phase.
	s.Hosts = append(s.Hosts, g5("h3", 2000))
	s.Workloads = append(s.Workloads, Workload{Name: "w3", Host: 3, MigratingTo: -1, Cores: 1,
		Request: Resources{CPU: 2000, MemoryMB: 1740}, Demand: 2000})
	got = Rebalance(s, ConsolidationPolicy{Detector: THR{0.8}, Selector: MMT{}})
	want = []Migration{
		{Workload: 1, From: 0, To: 2, Reason: "overload"},
		{Workload: 2, From: 1, To: 3, Reason: "underload"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plan = %+v, want %+v", got, want)
	}
	// A host with a migration under way is not a source.
	s.Workloads[2].MigratingTo = 3
	for _, m := range Rebalance(s, ConsolidationPolicy{Detector: THR{0.8}, Selector: MMT{}}) {
		if m.Workload == 2 {
			t.Fatalf("migrating workload moved again: %+v", m)
		}
	}
}

func randomSnapshot(seed uint64) *Snapshot {
	rng := rand.New(rand.NewPCG(seed, 0))
	s := &Snapshot{Epoch: 5}
	for i := 0; i < 40; i++ {
		h := g5("", 0)
		if i%2 == 0 {
			h = Host{Capacity: Resources{CPU: 3720, MemoryMB: 4096}, CoreCPU: 1860, Power: PowerHPProLiantML110G4()}
		}
		s.Hosts = append(s.Hosts, h)
	}
	mips := []int64{2500, 2000, 1000, 500}
	ram := []int64{870, 1740, 1740, 613}
	for i := 0; i < 60; i++ {
		t := rng.IntN(4)
		host := rng.IntN(20)*2 + 1
		hist := make([]float64, 30)
		for j := range hist {
			hist[j] = rng.Float64() * 0.6
		}
		d := hist[0] * float64(mips[t])
		s.Workloads = append(s.Workloads, Workload{Host: host, MigratingTo: -1, Cores: 1,
			Request: Resources{CPU: mips[t], MemoryMB: ram[t]}, Demand: d, History: hist})
		s.Hosts[host].MeteredCPU += min(d, 2660)
	}
	return s
}

func TestRebalanceIsDeterministic(t *testing.T) {
	for _, pol := range []ConsolidationPolicy{
		{Detector: THR{0.8}, Selector: RS{}, Seed: 3},
		{Detector: MADDetector{2.5}, Selector: MC{}},
		{Detector: LR{S: 1.2}, Selector: MU{}},
		{Detector: LR{S: 1.2, Mode: RegressionRobust}, Selector: MMT{}, Berth: BerthOptions{Enabled: true, TargetCeiling: 0.8, Quantile: 0.9, Window: 12, EvacuateBelow: 0.5, CoreAware: true}},
	} {
		a, _ := json.Marshal(Rebalance(randomSnapshot(11), pol))
		b, _ := json.Marshal(Rebalance(randomSnapshot(11), pol))
		if string(a) != string(b) {
			t.Fatalf("%s/%s: plans differ:\n%s\n%s", pol.Detector.Name(), pol.Selector.Name(), a, b)
		}
		if len(a) < 10 {
			t.Logf("%s: empty plan", pol.Detector.Name())
		}
	}
}

func TestRebalanceDoesNotModifySnapshot(t *testing.T) {
	s := randomSnapshot(4)
	before, _ := json.Marshal(s)
	Rebalance(s, ConsolidationPolicy{Detector: THR{0.5}, Selector: MMT{}})
	after, _ := json.Marshal(s)
	if string(before) != string(after) {
		t.Fatal("Rebalance modified its snapshot")
	}
}

// FuzzRebalance feeds Rebalance and Place odd snapshots (zero capacities,
// negative or huge demands, dangling host indices) built from fuzz bytes:
// they must not panic.
func FuzzRebalance(f *testing.F) {
	f.Add([]byte{3, 5, 0, 200, 7, 1, 255, 0, 9, 9, 9, 2})
	f.Add([]byte{1, 1, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		next := func() int {
			if len(b) == 0 {
				return 0
			}
			v := int(b[0])
			b = b[1:]
			return v
		}
		s := &Snapshot{}
		nh, nw := next()%6, next()%12
		for i := 0; i < nh; i++ {
			h := Host{Capacity: Resources{CPU: int64(next() * 40), MemoryMB: int64(next() * 20)}, CoreCPU: int64(next() * 10), MeteredCPU: float64(next()*30 - 100)}
			if next()%2 == 0 {
				h.Power = PowerHPProLiantML110G4()
			}
			s.Hosts = append(s.Hosts, h)
		}
		for i := 0; i < nw; i++ {
			hist := make([]float64, next()%35)
			for j := range hist {
				hist[j] = float64(next()) / 100
			}
			s.Workloads = append(s.Workloads, Workload{Host: next()%9 - 2, MigratingTo: next()%9 - 2, Cores: next() % 3,
				Request: Resources{CPU: int64(next()*20 - 50), MemoryMB: int64(next() * 10)}, Demand: float64(next()*20 - 30), History: hist})
		}
		for _, d := range []Detector{THR{0.8}, IQR{1.5}, MADDetector{2.5}, LR{S: 1.2}, LR{S: 1.2, Mode: RegressionRobust}} {
			for _, sel := range []Selector{MMT{}, MU{}, MC{}, RS{}} {
				for _, m := range Rebalance(s, ConsolidationPolicy{Detector: d, Selector: sel, Berth: BerthOptions{Enabled: next()%2 == 0, Window: 12, Quantile: 0.9, TargetCeiling: 0.8, EvacuateBelow: 0.5}}) {
					if m.To < 0 || m.To >= len(s.Hosts) || m.From == m.To {
						t.Fatalf("bad migration %+v", m)
					}
				}
			}
		}
		for i := range s.Workloads {
			Place(s, Request{Workload: s.Workloads[i], Policy: PlacePolicy{Limit: -1}})
			PlaceNew(s, []int{i, -1, 99}, ConsolidationPolicy{}, false)
			PlaceNew(s, []int{i}, ConsolidationPolicy{}, true)
		}
	})
}

// TestRebalanceCloudSimPower checks CloudSim's PABFD pricing. h0 asks for
// 5300/5320 > 0.8; MMT takes w0 (613 MB) and, still at 0.88, w1 (870 MB).
// They are placed largest first. w1 (1200 MIPS) goes to h1: both idle hosts
// cost the same and the first wins. For w0 (600 MIPS) the default prices h1
// as the plan leaves it, P(1800/5320) − P(0) = 13.2 W against h2's
// P(600/5320) − P(0) = 3.8 W, and picks h2. CloudSim prices h1 from its
// metered utilisation, still 0, so both cost 3.8 W and h1 wins again; h1
// is not tested for overload either, because it is metered at 0.
func TestRebalanceCloudSimPower(t *testing.T) {
	s := &Snapshot{
		Hosts: []Host{g5("h0", 5300), g5("h1", 0), g5("h2", 0)},
		Workloads: []Workload{
			{Name: "w0", Host: 0, MigratingTo: -1, Cores: 1, Request: Resources{CPU: 2500, MemoryMB: 613}, Demand: 600},
			{Name: "w1", Host: 0, MigratingTo: -1, Cores: 1, Request: Resources{CPU: 2000, MemoryMB: 870}, Demand: 1200},
			{Name: "w2", Host: 0, MigratingTo: -1, Cores: 1, Request: Resources{CPU: 2500, MemoryMB: 1740}, Demand: 2000},
			{Name: "w3", Host: 0, MigratingTo: -1, Cores: 1, Request: Resources{CPU: 2000, MemoryMB: 1740}, Demand: 1500},
		},
	}
	p := ConsolidationPolicy{Detector: THR{0.8}, Selector: MMT{}}
	got := Rebalance(s, p)
	want := []Migration{{Workload: 1, From: 0, To: 1, Reason: "overload"}, {Workload: 0, From: 0, To: 2, Reason: "overload"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("default plan = %+v, want %+v", got, want)
	}
	p.CloudSimPower = true
	got = Rebalance(s, p)
	want = []Migration{{Workload: 1, From: 0, To: 1, Reason: "overload"}, {Workload: 0, From: 0, To: 1, Reason: "overload"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("CloudSimPower plan = %+v, want %+v", got, want)
	}
}

// TestPlaceNewCloudSimPower: while VMs are being created no host has been
// metered, so with CloudSim's pricing a host's cost does not grow with what
// it already holds and creation is first fit on the cheapest host type; the
// default spreads the VMs over idle hosts.
func TestPlaceNewCloudSimPower(t *testing.T) {
	s := &Snapshot{Hosts: []Host{g5("h0", 0), g5("h1", 0), g5("h2", 0)}}
	for i := 0; i < 3; i++ {
		s.Workloads = append(s.Workloads, Workload{Host: -1, MigratingTo: -1, Cores: 1,
			Request: Resources{CPU: 1000, MemoryMB: 613}, MemoryReserved: true})
	}
	ws := []int{0, 1, 2}
	p := ConsolidationPolicy{Detector: THR{0.8}, Selector: MMT{}, CloudSimMemory: true}
	if got := PlaceNew(s, ws, p, false); !reflect.DeepEqual(got, []int{0, 1, 2}) {
		t.Fatalf("default creation = %v, want spread [0 1 2]", got)
	}
	p.CloudSimPower = true
	if got := PlaceNew(s, ws, p, false); !reflect.DeepEqual(got, []int{0, 0, 0}) {
		t.Fatalf("CloudSimPower creation = %v, want [0 0 0]", got)
	}
}

// TestRebalanceCloudSimUnderload: MMT takes w1 off the overloaded h0 and
// PABFD puts it on h1 (+20.8 W against +22.0 W on h2). By default h1, having
// just received a workload, is not an underload source, so the least
// utilised source is h2, whose w3 fits on h1. CloudSim's bug lets h1 be the
// source: both its resident w2 and the w1 just planned onto it go on to h2,
// so w1 appears twice in the plan.
func TestRebalanceCloudSimUnderload(t *testing.T) {
	s := &Snapshot{
		Hosts: []Host{g5("h0", 4400), g5("h1", 300), g5("h2", 1500)},
		Workloads: []Workload{
			{Name: "w0", Host: 0, MigratingTo: -1, Cores: 1, Request: Resources{CPU: 2000, MemoryMB: 1740}, Demand: 2000},
			{Name: "w1", Host: 0, MigratingTo: -1, Cores: 1, Request: Resources{CPU: 2500, MemoryMB: 613}, Demand: 2400},
			{Name: "w2", Host: 1, MigratingTo: -1, Cores: 1, Request: Resources{CPU: 500, MemoryMB: 613}, Demand: 300},
			{Name: "w3", Host: 2, MigratingTo: -1, Cores: 1, Request: Resources{CPU: 2000, MemoryMB: 870}, Demand: 1500},
		},
	}
	p := ConsolidationPolicy{Detector: THR{0.8}, Selector: MMT{}}
	got := Rebalance(s, p)
	want := []Migration{
		{Workload: 1, From: 0, To: 1, Reason: "overload"},
		{Workload: 3, From: 2, To: 1, Reason: "underload"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("default plan = %+v, want %+v", got, want)
	}
	p.CloudSimUnderload = true
	got = Rebalance(s, p)
	want = []Migration{
		{Workload: 1, From: 0, To: 1, Reason: "overload"},
		{Workload: 1, From: 1, To: 2, Reason: "underload"},
		{Workload: 2, From: 1, To: 2, Reason: "underload"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("CloudSimUnderload plan = %+v, want %+v", got, want)
	}
}
