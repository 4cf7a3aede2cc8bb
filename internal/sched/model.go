package sched

// Resources is an amount of the three scheduled resources. CPU is in
// whatever unit the caller uses throughout (millicores for containers, MIPS
// for the CloudSim model).
type Resources struct {
	CPU      int64
	MemoryMB int64
	Slots    int64
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	return Resources{r.CPU + o.CPU, r.MemoryMB + o.MemoryMB, r.Slots + o.Slots}
}

// Sub returns r − o.
func (r Resources) Sub(o Resources) Resources {
	return Resources{r.CPU - o.CPU, r.MemoryMB - o.MemoryMB, r.Slots - o.Slots}
}

// Host is one machine in a Snapshot.
type Host struct {
	Name string
	// Capacity is the total schedulable capacity. A zero Slots means no slot
	// limit.
	Capacity Resources
	// CoreCPU is the CPU of one core: a single-core workload can never get
	// more, and a workload whose per-core demand exceeds it does not fit.
	// Zero means no per-core limit.
	CoreCPU int64
	Labels  map[string]string
	// Power is the host's SPECpower table; nil means power-aware scoring
	// treats the host as having a linear 0→1 model.
	Power *PowerModel
	// Standby hosts are switched off or asleep; placement may wake them.
	Standby bool

	// Allocated is the sum of the requests of the workloads bound here.
	Allocated Resources
	// MeteredCPU is the CPU the host was last measured to deliver (CloudSim's
	// utilizationMips). Consolidation uses it for the host's current power
	// and to tell switched-off hosts (0) from active ones.
	MeteredCPU float64
	// Tags counts the labels ("key=value") of the workloads bound here; the
	// affinity checks read it. Maintained by Snapshot.Bind/Unbind.
	Tags map[string]int
}

// Constraint requires a host label to have a value.
type Constraint struct{ Key, Value string }

// Workload is a container or VM.
type Workload struct {
	Name string
	// Host is the index of the host the workload runs on, or -1.
	Host int
	// Request is what admission and feasibility reserve. Request.CPU is also
	// the workload's nominal CPU: its utilisation samples are fractions of it.
	Request Resources
	// Cores is how many cores the CPU is spread over (default 1); with
	// Host.CoreCPU it bounds what one workload can use on a host.
	Cores    int
	Priority int
	Labels   map[string]string
	// Constraints must all hold on the chosen host.
	Constraints []Constraint
	// Affinity lists tags ("key=value") of which at least one must already be
	// present on the chosen host; AntiAffinity lists tags that must not be.
	Affinity     []string
	AntiAffinity []string

	// Demand is the CPU the workload currently asks for (≤ Request.CPU for
	// a VM; its utilisation × nominal CPU).
	Demand float64
	// History holds past utilisation samples (fractions of Request.CPU),
	// newest first.
	History []float64
	// MigratingTo is the target host index while a migration is under way,
	// or -1. Such workloads are not selected again and their hosts are not
	// consolidated.
	MigratingTo int
	// MemoryReserved reports whether the workload's memory is still reserved
	// on its host. CloudSim reserves a VM's configured RAM at creation only;
	// after a migration the VM's (null-model) RAM request is 0. With
	// ConsolidationPolicy.CloudSimMemory, consolidation honours memory only
	// for workloads with this set.
	MemoryReserved bool
	// Since orders the workloads bound to one host: lower means bound
	// earlier. Selection ties go to the earliest; callers that append in bind
	// order can leave it 0 and rely on index order.
	Since uint64
}

// Snapshot is the state of the cluster at one moment. Place and Rebalance
// only read it; the caller applies their results (Bind, Unbind).
type Snapshot struct {
	Hosts     []Host
	Workloads []Workload
	// Epoch identifies the moment (e.g. the scheduling tick); it is mixed
	// into seeds so that random choices differ between ticks yet repeat for
	// the same input.
	Epoch uint64

	totalCap, totalAlloc Resources
	totalsValid          bool
}

// Recount recomputes the cluster totals admission control uses. Call it after
// editing Hosts directly; Bind and Unbind keep them current.
func (s *Snapshot) Recount() {
	s.totalCap, s.totalAlloc = Resources{}, Resources{}
	for i := range s.Hosts {
		s.totalCap = s.totalCap.Add(s.Hosts[i].Capacity)
		s.totalAlloc = s.totalAlloc.Add(s.Hosts[i].Allocated)
	}
	s.totalsValid = true
}

// Totals returns the cluster's capacity and allocation.
func (s *Snapshot) Totals() (capacity, allocated Resources) {
	if !s.totalsValid {
		s.Recount()
	}
	return s.totalCap, s.totalAlloc
}

// Bind records that a workload with request r and labels runs on host h.
func (s *Snapshot) Bind(h int, r Resources, labels map[string]string) {
	if !s.totalsValid {
		s.Recount()
	}
	host := &s.Hosts[h]
	host.Allocated = host.Allocated.Add(r)
	host.Standby = false
	s.totalAlloc = s.totalAlloc.Add(r)
	if len(labels) > 0 {
		if host.Tags == nil {
			host.Tags = make(map[string]int, len(labels))
		}
		for k, v := range labels {
			host.Tags[k+"="+v]++
		}
	}
}

// Unbind reverses Bind.
func (s *Snapshot) Unbind(h int, r Resources, labels map[string]string) {
	if !s.totalsValid {
		s.Recount()
	}
	host := &s.Hosts[h]
	host.Allocated = host.Allocated.Sub(r)
	s.totalAlloc = s.totalAlloc.Sub(r)
	for k, v := range labels {
		t := k + "=" + v
		if host.Tags[t] <= 1 {
			delete(host.Tags, t)
		} else {
			host.Tags[t]--
		}
	}
}
