package sched_test

import (
	"fmt"

	"github.com/berth-dev/berth/internal/sched"
)

// Place one container on a small cluster, then record the binding.
func ExamplePlace() {
	s := &sched.Snapshot{Hosts: []sched.Host{
		{Name: "a", Capacity: sched.Resources{CPU: 4000, MemoryMB: 8192}},
		{Name: "b", Capacity: sched.Resources{CPU: 4000, MemoryMB: 8192}, Allocated: sched.Resources{CPU: 2000, MemoryMB: 2048}},
	}}
	w := sched.Workload{Name: "web", Request: sched.Resources{CPU: 500, MemoryMB: 512}}
	plan := sched.Place(s, sched.Request{Workload: w, Policy: sched.PlacePolicy{Scoring: sched.BinPack, Seed: 1}})
	fmt.Println(plan.Outcome, s.Hosts[plan.Host].Name)
	s.Bind(plan.Host, w.Request, w.Labels)

	// The cluster is now at 3000/8000 CPU; a 4000-millicore request would
	// take it to 87.5%, over the default 80% admission threshold.
	big := sched.Workload{Name: "batch", Request: sched.Resources{CPU: 4000}}
	fmt.Println(sched.Place(s, sched.Request{Workload: big}).Outcome)
	// Output:
	// placed b
	// refused
}

// Rebalance a two-host cluster where one host is over the 0.8 threshold.
func ExampleRebalance() {
	host := func(metered float64) sched.Host {
		return sched.Host{Capacity: sched.Resources{CPU: 5320, MemoryMB: 4096}, CoreCPU: 2660,
			Power: sched.PowerHPProLiantML110G5(), MeteredCPU: metered}
	}
	vm := func(host int, mips, ram int64, demand float64) sched.Workload {
		return sched.Workload{Host: host, MigratingTo: -1, Cores: 1, Demand: demand,
			Request: sched.Resources{CPU: mips, MemoryMB: ram}}
	}
	s := &sched.Snapshot{
		Hosts:     []sched.Host{host(4500), host(1000)},
		Workloads: []sched.Workload{vm(0, 2500, 870, 2500), vm(0, 2000, 1740, 2000), vm(1, 1000, 613, 1000)},
	}
	for _, m := range sched.Rebalance(s, sched.ConsolidationPolicy{Detector: sched.THR{Threshold: 0.8}, Selector: sched.MMT{}}) {
		fmt.Printf("move workload %d from host %d to host %d (%s)\n", m.Workload, m.From, m.To, m.Reason)
	}
	// Output:
	// move workload 0 from host 0 to host 1 (overload)
}
