package sim

import (
	"fmt"
	"math"
	"slices"

	"github.com/berth-dev/berth/internal/sched"
)

// The CloudSim PlanetLab setup (FACTS.md §2).
const (
	Interval      = 300.0   // seconds between scheduling ticks
	DaySeconds    = 86400.0 // simulated time
	HostCount     = 800
	HostRAM       = 4096 // MB
	MigrationMBps = 62.5 // half of 1 Gbit/s, in MB/s
	// CloudSim303TickOffset is how much later than the sample points the
	// ticks of CloudSim 3.0.3 fall (300.1, 600.1, ...: the cloudlets are
	// submitted after the 0.1 s minimum delay between events). See
	// Policy.TickOffset.
	CloudSim303TickOffset = 0.1
)

// hostType is one of the two server models.
type hostType struct {
	coreMIPS, cores int
	power           func() *sched.PowerModel
}

var hostTypes = [2]hostType{
	{1860, 2, sched.PowerHPProLiantML110G4},
	{2660, 2, sched.PowerHPProLiantML110G5},
}

// vmTypes: MIPS and RAM (MB) of the four VM types, as in CloudSim's code.
var vmTypes = [4]struct{ mips, ram int }{
	{2500, 870}, {2000, 1740}, {1000, 1740}, {500, 613},
}

// Result is one simulated day.
type Result struct {
	Policy string
	Hosts  int
	VMs    int
	// Destroyed counts the VMs CloudSim's datacenter removed because they
	// asked for no CPU (0 with Policy.KeepIdleVMs).
	Destroyed int
	Metrics   sched.Metrics
}

type simVM struct {
	mips, ram  float64
	data       [SamplesPerDay + 1]float64 // utilisation fractions; data[288] = data[287]
	host, to   int                        // to: (last) migration target or -1
	inflight   int                        // migrations under way (CloudSim can run two at once)
	demand     float64
	alloc      float64
	hist       [sched.HistoryLength]float64
	histLen    int
	since      uint64
	memRes     bool
	meter      sched.WorkloadMeter
	migrations int
	// gone: destroyed because it asked for no CPU (see Policy.KeepIdleVMs).
	gone bool
}

type simHost struct {
	total, core float64
	power       *sched.PowerModel
	vms         []int
	util        float64 // delivered MIPS (CloudSim utilizationMips)
	meter       sched.HostMeter
}

type pendingMigration struct {
	vm, to int
	end    float64
}

type simulator struct {
	pol     Policy
	vms     []simVM
	hosts   []simHost
	energy  float64
	last    float64
	migr    int
	pending []pendingMigration
	removed int // VMs destroyed by destroyIdle
	seq     uint64
	snap    sched.Snapshot
	dem     []float64
	role    []sched.ShareRole
	alloc   []float64
}

// RunPlanetLab simulates one day of traces under a policy.
func RunPlanetLab(traces []Trace, pol Policy) (Result, error) {
	// CloudSim checks RAM only at VM creation (see sched.CloudSimMemory).
	pol.Consolidation.CloudSimMemory = true
	s := &simulator{pol: pol}
	s.setup(traces)
	if err := s.initialPlacement(); err != nil {
		return Result{}, err
	}
	// CloudSim reserves a VM's RAM only while it is being created. The first
	// optimizeAllocation destroys and re-creates every VM (restoreAllocation),
	// and a created VM asks for 0 RAM (UtilizationModelNull), so from then on
	// RAM never limits a placement; during that first round the VMs being
	// placed ask for 0 too. So the reservations end here.
	for i := range s.vms {
		s.vms[i].memRes = false
	}
	// Nothing is metered at time 0. CloudSim's first host update is the first
	// scheduling tick: until then every host's utilisation, and so its
	// "previous" utilisation for the first energy interval, is 0 (that
	// interval adds no energy except under NPA, which charges maximum power
	// regardless), and PowerVm records its first history sample there.
	ticks := int(DaySeconds / Interval)
	for k := 1; k <= ticks; k++ {
		t := float64(k) * Interval
		s.completeMigrations(t)
		s.setDemand(t)
		s.updateAll(t, true)
		s.sampleHistory()
		s.destroyIdle()
		// CloudSim stops before processing the tick at the simulation limit,
		// so the last consolidation runs one interval before the end.
		if k < ticks && pol.Kind == Migration {
			s.consolidate(t, uint64(k))
		}
	}
	hm := make([]sched.HostMeter, len(s.hosts))
	for i := range s.hosts {
		hm[i] = s.hosts[i].meter
	}
	vm := make([]sched.WorkloadMeter, len(s.vms))
	for i := range s.vms {
		vm[i] = s.vms[i].meter
	}
	return Result{Policy: pol.Name, Hosts: len(s.hosts), VMs: len(s.vms), Destroyed: s.removed,
		Metrics: sched.Summarize(s.energy, hm, vm, s.migr)}, nil
}

func (s *simulator) setup(traces []Trace) {
	s.hosts = make([]simHost, HostCount)
	for i := range s.hosts {
		ht := hostTypes[i%2]
		s.hosts[i] = simHost{total: float64(ht.coreMIPS * ht.cores), core: float64(ht.coreMIPS), power: ht.power()}
	}
	n := len(traces)
	block := (n + 3) / 4 // vmType = i / ceil(N/4)
	s.vms = make([]simVM, n)
	for i := range traces {
		vt := vmTypes[min(i/block, 3)]
		v := &s.vms[i]
		v.mips, v.ram = float64(vt.mips), float64(vt.ram)
		for j, p := range traces[i].Samples {
			v.data[j] = float64(p) / 100
		}
		v.data[SamplesPerDay] = v.data[SamplesPerDay-1]
		v.host, v.to = -1, -1
	}
	s.snap.Hosts = make([]sched.Host, len(s.hosts))
	for i := range s.hosts {
		h := &s.hosts[i]
		s.snap.Hosts[i] = sched.Host{
			Name:     fmt.Sprintf("host-%d", i),
			Capacity: sched.Resources{CPU: int64(h.total), MemoryMB: HostRAM},
			CoreCPU:  int64(h.core),
			Power:    h.power,
		}
	}
	s.snap.Workloads = make([]sched.Workload, n)
	for i := range s.vms {
		s.snap.Workloads[i] = sched.Workload{
			Name:        traces[i].Name,
			Host:        -1,
			Request:     sched.Resources{CPU: int64(s.vms[i].mips), MemoryMB: int64(s.vms[i].ram), Slots: 1},
			Cores:       1,
			MigratingTo: -1,
		}
	}
}

// utilAt is UtilizationModelPlanetLabInMemory.getUtilization: the sample at
// a 300 s boundary, linear interpolation in between.
func (v *simVM) utilAt(t float64) float64 {
	if math.Mod(t, Interval) == 0 {
		return v.data[int(t)/int(Interval)]
	}
	t1 := int(math.Floor(t / Interval))
	t2 := int(math.Ceil(t / Interval))
	if t2 > SamplesPerDay {
		t2 = SamplesPerDay
	}
	u1, u2 := v.data[t1], v.data[t2]
	delta := (u2 - u1) / (float64(t2-t1) * Interval)
	return u1 + delta*(t-float64(t1)*Interval)
}

// initialPlacement places every VM at its full nominal MIPS, in VM order:
// first fit for NPA and DVFS, PABFD for the migration policies. As in
// CloudSim, a VM placed earlier holds its full MIPS on the host but asks for
// nothing until the first update, and hosts have not been metered yet.
func (s *simulator) initialPlacement() error {
	cp := s.pol.Consolidation
	if s.pol.Kind != Migration {
		cp = sched.ConsolidationPolicy{Detector: sched.THR{Threshold: 1}, CloudSimMemory: true}
	}
	ws := make([]int, len(s.vms))
	for i := range s.vms {
		ws[i] = i
		s.snap.Workloads[i].MemoryReserved = true // reserved at creation
	}
	hosts := sched.PlaceNew(&s.snap, ws, cp, s.pol.Kind != Migration)
	for i, h := range hosts {
		w := &s.snap.Workloads[i]
		if h < 0 {
			return fmt.Errorf("initial placement: no host can take VM %d (%s, %.0f MIPS, %.0f MB); the day has more VMs than %d hosts can hold",
				i, w.Name, s.vms[i].mips, s.vms[i].ram, HostCount)
		}
		w.Host = h
		w.Since = s.nextSeq()
		v := &s.vms[i]
		v.host, v.since, v.memRes = h, w.Since, true
		s.hosts[h].vms = append(s.hosts[h].vms, i)
	}
	return nil
}

func (s *simulator) nextSeq() uint64 { s.seq++; return s.seq }

func (s *simulator) setDemand(t float64) {
	for i := range s.vms {
		if s.vms[i].gone {
			continue
		}
		s.vms[i].demand = s.vms[i].utilAt(min(t+s.pol.TickOffset, DaySeconds)) * s.vms[i].mips
	}
}

// updateAll is CloudSim's updateCloudetProcessingWithoutSchedulingFutureEventsForce:
// every host recomputes its CPU shares at time t, and with energy set the
// interval since the last update is integrated with the trapezoid rule.
func (s *simulator) updateAll(t float64, energy bool) {
	dt := t - s.last
	for h := range s.hosts {
		host := &s.hosts[h]
		prev := host.util / host.total
		s.updateHost(h, t)
		if energy && dt > 0 {
			switch s.pol.Kind {
			case NPA:
				s.energy += host.power.MaxPower() * dt
			default:
				s.energy += host.power.IntervalEnergy(clampUtil(prev), clampUtil(host.util/host.total), dt)
			}
		}
	}
	s.last = t
}

func clampUtil(u float64) float64 {
	if u > 1 && u < 1.01 {
		return 1
	}
	return u
}

// updateHost is HostDynamicWorkload.updateVmsProcessing: share the CPU,
// record the host's and its resident VMs' state at time t.
func (s *simulator) updateHost(h int, t float64) {
	host := &s.hosts[h]
	n := len(host.vms)
	s.dem = slices.Grow(s.dem[:0], n)[:n]
	s.role = slices.Grow(s.role[:0], n)[:n]
	s.alloc = slices.Grow(s.alloc[:0], n)[:n]
	for i, vi := range host.vms {
		v := &s.vms[vi]
		s.dem[i] = v.demand
		switch {
		case v.host != h: // listed here, running elsewhere
			s.role[i] = sched.MigratingIn
		case v.to >= 0:
			s.role[i] = sched.MigratingOut
		default:
			s.role[i] = sched.Resident
		}
	}
	sched.ShareCPU(host.total, host.core, s.dem, nil, s.role, s.alloc)
	var used, requested float64
	for i, vi := range host.vms {
		v := &s.vms[vi]
		a := s.alloc[i]
		if s.role[i] != sched.MigratingIn {
			v.alloc = a
			v.meter.Record(t, a, v.demand, v.to >= 0)
			if v.to >= 0 {
				a /= 0.9 // CloudSim counts a migrating-out VM at its full share
			}
		}
		used += a
		requested += v.demand
	}
	host.util = used
	host.meter.Record(t, used, requested, used > 0)
}

func (s *simulator) sampleHistory() {
	for i := range s.vms {
		v := &s.vms[i]
		if v.gone {
			continue
		}
		u := v.demand / v.mips
		copy(v.hist[1:], v.hist[:len(v.hist)-1])
		v.hist[0] = u
		v.histLen = min(v.histLen+1, sched.HistoryLength)
	}
}

// consolidate runs sched.Rebalance on a snapshot of the simulated data centre
// and starts the migrations it returns.
func (s *simulator) consolidate(t float64, epoch uint64) {
	s.snap.Epoch = epoch
	for h := range s.hosts {
		s.snap.Hosts[h].MeteredCPU = s.hosts[h].util
	}
	for i := range s.vms {
		v := &s.vms[i]
		w := &s.snap.Workloads[i]
		w.Host, w.MigratingTo = v.host, v.to
		w.Demand = v.demand
		w.History = v.hist[:v.histLen]
		w.Since = v.since
		w.MemoryReserved = v.memRes
	}
	for _, m := range sched.Rebalance(&s.snap, s.pol.Consolidation) {
		s.startMigration(m.Workload, m.To, t)
	}
}

// startMigration is PowerDatacenter's migration start plus
// Host.addMigratingInVm: the target reserves 10% of the VM's demand, both
// hosts are updated, and completion is scheduled RAM ÷ bandwidth later.
// A VM that a CloudSim plan moves twice in one round (see
// sched.ConsolidationPolicy.CloudSimUnderload) migrates to both targets at
// once; both are counted, the completions run in plan order, and it ends on
// the last target.
func (s *simulator) startMigration(vi, to int, t float64) {
	v := &s.vms[vi]
	if v.host == to || slices.Contains(s.hosts[to].vms, vi) {
		return
	}
	v.to = to
	v.inflight++
	s.hosts[to].vms = append(s.hosts[to].vms, vi)
	s.migr++
	v.migrations++
	s.updateHost(to, t)
	s.updateHost(v.host, t)
	s.pending = append(s.pending, pendingMigration{vm: vi, to: to, end: t + v.ram/MigrationMBps})
}

// completeMigrations processes migrations that end before time t, grouped by
// end time as CloudSim's event queue does.
func (s *simulator) completeMigrations(t float64) {
	if len(s.pending) == 0 {
		return
	}
	slices.SortStableFunc(s.pending, func(a, b pendingMigration) int {
		switch {
		case a.end < b.end:
			return -1
		case a.end > b.end:
			return 1
		}
		return 0
	})
	i := 0
	for i < len(s.pending) && s.pending[i].end < t {
		tc := s.pending[i].end
		s.setDemand(tc)
		s.updateAll(tc, true)
		s.destroyIdle()
		for i < len(s.pending) && s.pending[i].end == tc {
			s.finish(s.pending[i])
			i++
		}
		s.updateAll(tc, false)
		s.destroyIdle()
	}
	s.pending = append(s.pending[:0], s.pending[i:]...)
}

// destroyIdle is the "Remove completed VMs" step that ends every CloudSim
// datacenter update (PowerDatacenter.updateCloudetProcessingWithoutScheduling
// FutureEventsForce): HostDynamicWorkload.getCompletedVms reports every VM
// that is not migrating and requests 0 MIPS, and the datacenter deallocates
// it for good. A PlanetLab VM therefore disappears the first time its trace
// is 0 at an update: at its first zero sample, or with CloudSim 3.0.3's tick
// offset at its first two zero samples in a row.
// Its meters stop there, which is how CloudSim's metrics see it too.
func (s *simulator) destroyIdle() {
	if s.pol.KeepIdleVMs {
		return
	}
	for i := range s.vms {
		v := &s.vms[i]
		if v.gone || v.host < 0 || v.to >= 0 || v.demand != 0 {
			continue
		}
		h := &s.hosts[v.host]
		if j := slices.Index(h.vms, i); j >= 0 {
			h.vms = slices.Delete(h.vms, j, j+1)
		}
		v.host, v.gone = -1, true
		s.removed++
	}
}

func (s *simulator) finish(m pendingMigration) {
	v := &s.vms[m.vm]
	src := &s.hosts[v.host]
	if j := slices.Index(src.vms, m.vm); j >= 0 {
		src.vms = slices.Delete(src.vms, j, j+1)
	}
	dst := &s.hosts[m.to]
	if j := slices.Index(dst.vms, m.vm); j >= 0 {
		dst.vms = slices.Delete(dst.vms, j, j+1)
	}
	dst.vms = append(dst.vms, m.vm) // re-created at the end of the list
	v.host = m.to
	if v.inflight--; v.inflight == 0 {
		v.to = -1
	}
	v.since = s.nextSeq()
	v.memRes = false // a migrated VM's RAM request is 0 (UtilizationModelNull)
}
