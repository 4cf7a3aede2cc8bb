package sched

import (
	"encoding/json"
	"fmt"
	"testing"
)

func cluster(n int) *Snapshot {
	s := &Snapshot{}
	for i := 0; i < n; i++ {
		s.Hosts = append(s.Hosts, Host{
			Name:     fmt.Sprintf("h%d", i),
			Capacity: Resources{CPU: 4000, MemoryMB: 8192, Slots: 10},
			Labels:   map[string]string{"zone": []string{"a", "b"}[i%2]},
			Power:    PowerHPProLiantML110G5(),
		})
	}
	s.Recount()
	return s
}

func TestAdmissionAtThreshold(t *testing.T) {
	s := &Snapshot{Hosts: []Host{{Capacity: Resources{CPU: 1000, MemoryMB: 1000}, Allocated: Resources{CPU: 700}}}}
	pol := PlacePolicy{} // default threshold 0.8
	// Below the threshold: 700 + 50 = 75%, and exactly reaching it: 80%.
	for _, cpu := range []int64{50, 100} {
		if p := Place(s, Request{Workload: Workload{Request: Resources{CPU: cpu}}, Policy: pol}); p.Outcome != Placed {
			t.Errorf("request %d at 70%% load: %v (%s), want placed", cpu, p.Outcome, p.Reason)
		}
	}
	// Going over it is refused.
	if p := Place(s, Request{Workload: Workload{Request: Resources{CPU: 101}}, Policy: pol}); p.Outcome != Refused {
		t.Errorf("request over the threshold: %v, want refused", p.Outcome)
	}
	// A cluster at the threshold refuses any further work...
	s.Hosts[0].Allocated.CPU = 800
	s.Recount()
	if p := Place(s, Request{Workload: Workload{Request: Resources{CPU: 1}}, Policy: pol}); p.Outcome != Refused || p.Host != -1 {
		t.Errorf("at the threshold: %v, want refused", p.Outcome)
	}
	// ... or queues it when asked to.
	if p := Place(s, Request{Workload: Workload{Request: Resources{CPU: 1}}, Policy: PlacePolicy{Queue: true}}); p.Outcome != Queued {
		t.Errorf("at the threshold with Queue: %v, want queued", p.Outcome)
	}
	// Memory counts too.
	s.Hosts[0].Allocated = Resources{CPU: 0, MemoryMB: 790}
	s.Recount()
	if p := Place(s, Request{Workload: Workload{Request: Resources{CPU: 1, MemoryMB: 20}}, Policy: pol}); p.Outcome != Refused {
		t.Errorf("memory over the threshold: %v, want refused", p.Outcome)
	}
}

func TestFeasibility(t *testing.T) {
	s := cluster(6)
	pol := PlacePolicy{Limit: -1, AdmissionThreshold: 1}
	w := Workload{Request: Resources{CPU: 100, MemoryMB: 100}, Constraints: []Constraint{{"zone", "b"}}}
	for seq := uint64(0); seq < 20; seq++ {
		p := Place(s, Request{Workload: w, Policy: pol, Seq: seq})
		if p.Outcome != Placed || s.Hosts[p.Host].Labels["zone"] != "b" {
			t.Fatalf("constraint ignored: %+v", p)
		}
	}
	// Anti-affinity: spread replicas of "app=db", one per host.
	db := Workload{Request: Resources{CPU: 100, MemoryMB: 100}, Labels: map[string]string{"app": "db"}, AntiAffinity: []string{"app=db"}}
	used := map[int]bool{}
	for i := 0; i < 6; i++ {
		p := Place(s, Request{Workload: db, Policy: pol, Seq: uint64(i)})
		if p.Outcome != Placed || used[p.Host] {
			t.Fatalf("replica %d: %+v (used %v)", i, p, used)
		}
		used[p.Host] = true
		s.Bind(p.Host, db.Request, db.Labels)
	}
	if p := Place(s, Request{Workload: db, Policy: pol}); p.Outcome != NoFit {
		t.Fatalf("7th replica: %v, want no-fit", p.Outcome)
	}
	// Affinity: must land next to an app=db workload; unbind all but host 3.
	for h := range s.Hosts {
		if h != 3 {
			s.Unbind(h, db.Request, db.Labels)
		}
	}
	web := Workload{Request: Resources{CPU: 100, MemoryMB: 100}, Affinity: []string{"app=db"}}
	if p := Place(s, Request{Workload: web, Policy: pol}); p.Host != 3 {
		t.Fatalf("affinity: %+v, want host 3", p)
	}
	// Resources: a request bigger than any host does not fit.
	if p := Place(s, Request{Workload: Workload{Request: Resources{CPU: 5000}}, Policy: pol}); p.Outcome != NoFit {
		t.Fatalf("oversized: %v", p.Outcome)
	}
}

func TestScoring(t *testing.T) {
	s := cluster(3)
	s.Hosts[0].Allocated = Resources{CPU: 3000, MemoryMB: 6000}
	s.Hosts[1].Allocated = Resources{CPU: 1000, MemoryMB: 2000}
	s.Recount()
	w := Workload{Request: Resources{CPU: 500, MemoryMB: 500}}
	pol := PlacePolicy{Limit: -1, AdmissionThreshold: 1}
	if p := Place(s, Request{Workload: w, Policy: pol}); p.Host != 0 || p.Scored != 3 {
		t.Errorf("binpack: %+v, want host 0 of 3 scored", p)
	}
	pol.Scoring = Spread
	if p := Place(s, Request{Workload: w, Policy: pol}); p.Host != 2 {
		t.Errorf("spread: %+v, want empty host 2", p)
	}
	// Power-aware: waking empty host 2 costs its idle 93.7 W; adding 500
	// MIPS to a busy host costs a few watts, least where the table is
	// flattest.
	pol.Scoring = PowerAware
	if p := Place(s, Request{Workload: w, Policy: pol}); p.Host == 2 {
		t.Errorf("power: woke a standby host: %+v", p)
	}
	// Limit bounds the candidates scored.
	pol = PlacePolicy{Limit: 2, AdmissionThreshold: 1}
	if p := Place(s, Request{Workload: w, Policy: pol}); p.Scored != 2 {
		t.Errorf("limit 2 scored %d", p.Scored)
	}
}

func TestRandomOrderIsAPermutation(t *testing.T) {
	for _, n := range []int{1, 2, 3, 10, 12, 97, 5000} {
		var o RandomOrder
		o.Reset(n, 42, uint64(n))
		seen := make([]bool, n)
		c := 0
		for {
			h, ok := o.Next()
			if !ok {
				break
			}
			if seen[h] {
				t.Fatalf("n=%d: %d twice", n, h)
			}
			seen[h] = true
			c++
		}
		if c != n {
			t.Fatalf("n=%d: visited %d", n, c)
		}
	}
}

func TestPlaceIsDeterministic(t *testing.T) {
	run := func() []byte {
		s := cluster(50)
		var plans []Plan
		for i := 0; i < 300; i++ {
			w := Workload{Request: Resources{CPU: int64(50 + i%7*40), MemoryMB: int64(64 + i%5*100)}}
			p := Place(s, Request{Workload: w, Policy: PlacePolicy{Seed: 99, Limit: 3}, Seq: uint64(i)})
			if p.Outcome == Placed {
				s.Bind(p.Host, w.Request, nil)
			}
			plans = append(plans, p)
		}
		b, _ := json.Marshal(plans)
		return b
	}
	a, b := run(), run()
	if string(a) != string(b) {
		t.Fatal("same seed and input gave different plans")
	}
}

func TestPlacerDoesNotAllocate(t *testing.T) {
	s := cluster(100)
	var p Placer
	w := Workload{Request: Resources{CPU: 1, MemoryMB: 1}}
	n := testing.AllocsPerRun(100, func() { p.Place(s, &w, PlacePolicy{}, 1) })
	if n != 0 {
		t.Fatalf("Placer.Place allocates %v times per call", n)
	}
}
