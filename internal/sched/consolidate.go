package sched

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
)

// HistoryLength is how many utilisation samples detectors look at (CloudSim's
// PowerVm.HISTORY_LENGTH).
const HistoryLength = 30

// Migration moves one workload. Rebalance returns migrations in the order to
// start them.
type Migration struct {
	Workload int // index into Snapshot.Workloads
	From, To int // host indices
	// Reason is "overload" or "underload".
	Reason string
}

// ConsolidationPolicy configures Rebalance: the CloudSim/CCPE12 dynamic
// consolidation scheme (overload detection, workload selection, PABFD
// placement, underload evacuation) plus berth's optional refinements.
type ConsolidationPolicy struct {
	Detector Detector
	Selector Selector
	// Seed feeds the random choices (RS).
	Seed uint64
	// Interval is the scheduling interval in seconds (300 for PlanetLab).
	Interval float64
	// MigrationMBps is the bandwidth a migration gets, in MB/s (CloudSim:
	// half of 1 Gbit/s = 62.5).
	MigrationMBps float64
	// NoUnderload disables the evacuation of under-utilised hosts.
	NoUnderload bool
	// CloudSimMemory counts memory only for workloads with MemoryReserved
	// set, as CloudSim does (after creation a VM's RAM request is 0, so RAM
	// never limits a migration). The default honours every workload's
	// memory request, which is what a live cluster needs.
	CloudSimMemory bool
	// CloudSimPower makes PABFD estimate a host's power the way CloudSim's
	// findHostForVm does: "before" is the power at the host's last metered
	// utilisation (Host.MeteredCPU) and "after" adds only the workload being
	// placed and the not-yet-delivered 90% of workloads migrating in
	// (getMaxUtilizationAfterAllocation). Workloads planned onto or off the
	// host earlier in the same round are not counted, and the overload test
	// is skipped for a host metered at 0. Suitability (free CPU) still sees
	// the plan. The default prices the host as the plan so far leaves it,
	// which is what a live scheduler wants.
	CloudSimPower bool
	// CloudSimUnderload lets the underload phase take as a source a host that
	// received workloads in the overload phase of the same round, and move
	// those workloads on again, as CloudSim does: it means to exclude such
	// hosts but builds the list from an empty map. A workload can then appear
	// twice in the plan (first target, then the final one); CloudSim runs both
	// migrations at once and counts both. The default excludes those hosts.
	CloudSimUnderload bool

	// Berth refinements; zero values give the plain CloudSim algorithm.
	Berth BerthOptions
}

// BerthOptions are berth's additions to the consolidation scheme; see
// docs/scheduling.md for the reasoning.
type BerthOptions struct {
	// Enabled switches all of the below on.
	Enabled bool
	// TargetCeiling: a host may receive a workload only if a high quantile
	// of its recent demand (after the move) stays at or below this fraction.
	TargetCeiling float64
	// Quantile of recent history used for the ceiling test (e.g. 0.9).
	Quantile float64
	// Window is how many recent samples the quantile uses.
	Window int
	// EvacuateBelow: only hosts whose recent mean utilisation is below this
	// are evacuated.
	EvacuateBelow float64
	// CoreAware keeps workloads whose demand can exceed one core of a host off
	// that host (a 2500-MIPS VM on a 1860-MIPS core is capped, which counts
	// as an SLA violation).
	CoreAware bool
}

// planHost is Rebalance's working state for one host: the host as the plan
// so far would leave it (workloads tentatively moved in or out).
type planHost struct {
	total, core float64
	power       *PowerModel
	meteredU    float64 // utilisation as last measured; fixed during planning
	meteredCPU  float64 // the same in CPU units, unclamped
	vms         []int   // workload indices in bind order
	demand      float64 // Σ demand (uncapped), CloudSim "requested"
	hist        [HistoryLength]float64
	histLen     int
	memUsed     int64
	migrIn      bool
	// used, avail and migIn cache allocated(h, -1) while usageOK.
	used, avail, migIn float64
	usageOK            bool
}

// Rebalance computes a migration plan for the snapshot: it finds overloaded
// hosts with the policy's detector, picks workloads to move off them with the
// selector, places those with PABFD (minimum power increase), and then tries
// to empty the least-utilised hosts entirely so they can go to standby. The
// snapshot is not modified.
func Rebalance(s *Snapshot, p ConsolidationPolicy) []Migration {
	c := newConsolidator(s, p)
	return c.run()
}

type consolidator struct {
	s       *Snapshot
	p       ConsolidationPolicy
	hosts   []planHost
	scratch []float64
	cands   []int
	// buffers for ShareCPU
	dem   []float64
	role  []ShareRole
	cores []int
	alloc []float64
	load  HostLoad
	hbuf  [HistoryLength]float64
	// demand and reserved are the workloads' CPU demand and the CPU their
	// host's scheduler holds for them (0: the demand). They start as the
	// snapshot's values; PlaceNew changes them for workloads it creates.
	demand, reserved []float64
}

func newConsolidator(s *Snapshot, p ConsolidationPolicy) *consolidator {
	if p.Interval <= 0 {
		p.Interval = 300
	}
	if p.MigrationMBps <= 0 {
		p.MigrationMBps = 62.5
	}
	if p.Detector == nil {
		p.Detector = THR{Threshold: 0.8}
	}
	if p.Selector == nil {
		p.Selector = MMT{}
	}
	c := &consolidator{s: s, p: p, scratch: make([]float64, DetectorScratch)}
	c.demand = make([]float64, len(s.Workloads))
	c.reserved = make([]float64, len(s.Workloads))
	for i := range s.Workloads {
		c.demand[i] = s.Workloads[i].Demand
	}
	c.hosts = make([]planHost, len(s.Hosts))
	for i := range s.Hosts {
		h := &s.Hosts[i]
		ph := &c.hosts[i]
		ph.total = float64(h.Capacity.CPU)
		ph.core = float64(h.CoreCPU)
		ph.power = h.Power
		ph.meteredCPU = h.MeteredCPU
		if ph.total > 0 {
			ph.meteredU = h.MeteredCPU / ph.total
			if ph.meteredU > 1 && ph.meteredU < 1.01 {
				ph.meteredU = 1
			}
		}
	}
	// Bind order: workloads sorted by index are already in bind order when the
	// caller keeps them that way; we sort by (Since) to honour it.
	order := make([]int, 0, len(s.Workloads))
	for i := range s.Workloads {
		// Workloads on no host, or on a host the snapshot does not have, are
		// not part of the plan.
		if h := s.Workloads[i].Host; h >= 0 && h < len(s.Hosts) {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(s.Workloads[a].Since, s.Workloads[b].Since)
	})
	for _, w := range order {
		wl := &s.Workloads[w]
		c.hosts[wl.Host].vms = append(c.hosts[wl.Host].vms, w)
		if wl.MigratingTo >= 0 && wl.MigratingTo < len(c.hosts) && wl.MigratingTo != wl.Host {
			c.hosts[wl.MigratingTo].vms = append(c.hosts[wl.MigratingTo].vms, w)
			c.hosts[wl.MigratingTo].migrIn = true
		}
	}
	for i := range c.hosts {
		c.recompute(i)
	}
	return c
}

// recompute rebuilds a host's sums from its workload list, in list order
// (the order CloudSim sums in, so the floating-point results agree).
func (c *consolidator) recompute(h int) {
	ph := &c.hosts[h]
	ph.usageOK = false
	ph.demand = 0
	ph.memUsed = 0
	ph.hist = [HistoryLength]float64{}
	for _, w := range ph.vms {
		wl := &c.s.Workloads[w]
		ph.demand += c.demand[w]
		if wl.MemoryReserved || !c.p.CloudSimMemory {
			ph.memUsed += wl.Request.MemoryMB
		}
		c.addHist(&ph.hist, ph.total, wl)
	}
	ph.histLen = trimmedLen(ph.hist[:])
}

func (c *consolidator) addHist(dst *[HistoryLength]float64, total float64, wl *Workload) {
	n := min(len(wl.History), HistoryLength)
	mips := float64(wl.Request.CPU)
	for i := 0; i < n; i++ {
		dst[i] += wl.History[i] * mips / total
	}
}

func trimmedLen(h []float64) int {
	n := len(h)
	for n > 0 && h[n-1] == 0 {
		n--
	}
	return n
}

// migrationIntervals is ceil(slowest migration ÷ interval) over the host's
// workloads plus extra (-1: none).
func (c *consolidator) migrationIntervals(h int, extra int) float64 {
	var maxRAM int64 = math.MinInt64
	for _, w := range c.hosts[h].vms {
		maxRAM = max(maxRAM, c.s.Workloads[w].Request.MemoryMB)
	}
	if extra >= 0 {
		maxRAM = max(maxRAM, c.s.Workloads[extra].Request.MemoryMB)
	}
	if maxRAM == math.MinInt64 {
		return 0
	}
	return math.Ceil(float64(maxRAM) / c.p.MigrationMBps / c.p.Interval)
}

// overloaded applies the detector to host h, as it would be with workload
// extra (-1: none) added.
func (c *consolidator) overloaded(h int, extra int) bool {
	ph := &c.hosts[h]
	c.load.Util = ph.demand / ph.total
	hist := ph.hist[:ph.histLen]
	if extra >= 0 {
		wl := &c.s.Workloads[extra]
		c.load.Util = (ph.demand + c.demand[extra]) / ph.total
		c.hbuf = ph.hist
		c.addHist(&c.hbuf, ph.total, wl)
		hist = c.hbuf[:trimmedLen(c.hbuf[:])]
	}
	c.load.History = hist
	c.load.MigrationIntervals = c.migrationIntervals(h, extra)
	return c.p.Detector.Overloaded(&c.load, c.scratch)
}

// allocated returns the CPU the host's scheduler would hand out with workload
// extra (-1: none) added, counting a migrating-in workload at its full
// potential (CloudSim's getUtilizationOfCpuMips), the CPU still free, and
// migIn, the part of used that migrating-in workloads will add once their
// migrations end (9× the 10% reserved for them now).
func (c *consolidator) allocated(h int, extra int) (used, avail, migIn float64) {
	ph := &c.hosts[h]
	c.dem, c.role, c.cores = c.dem[:0], c.role[:0], c.cores[:0]
	for _, w := range ph.vms {
		wl := &c.s.Workloads[w]
		d := c.demand[w]
		if c.reserved[w] != 0 {
			d = c.reserved[w]
		}
		c.dem = append(c.dem, d)
		c.cores = append(c.cores, wl.Cores)
		switch {
		case wl.MigratingTo == h:
			c.role = append(c.role, MigratingIn)
		case wl.MigratingTo >= 0:
			c.role = append(c.role, MigratingOut)
		default:
			c.role = append(c.role, Resident)
		}
	}
	if extra >= 0 {
		wl := &c.s.Workloads[extra]
		c.dem = append(c.dem, c.demand[extra])
		c.cores = append(c.cores, wl.Cores)
		c.role = append(c.role, Resident)
	}
	c.alloc = slices.Grow(c.alloc[:0], len(c.dem))[:len(c.dem)]
	ShareCPU(ph.total, ph.core, c.dem, c.cores, c.role, c.alloc)
	avail = ph.total
	for i, a := range c.alloc {
		if c.role[i] == MigratingIn {
			used += a * 0.9 / 0.1
			migIn += a * 0.9 / 0.1
		}
		used += a
		r := capPerCore(c.dem[i], ph.core, coreCount(c.cores, i))
		if c.role[i] == MigratingIn {
			r *= 0.1
		}
		avail -= r
	}
	if avail < 0 {
		avail = 0
	}
	return used, avail, migIn
}

func (c *consolidator) hostPower(h int, u float64) float64 {
	if p := c.hosts[h].power; p != nil {
		return p.Power(u)
	}
	return min(max(u, 0), 1)
}

// usage is allocated(h, -1), cached until the host's workload list changes.
func (c *consolidator) usage(h int) (used, avail, migIn float64) {
	ph := &c.hosts[h]
	if !ph.usageOK {
		ph.used, ph.avail, ph.migIn = c.allocated(h, -1)
		ph.usageOK = true
	}
	return ph.used, ph.avail, ph.migIn
}

// suitable is CloudSim's Host.isSuitableForVm against the plan so far.
func (c *consolidator) suitable(h int, w int) bool {
	ph := &c.hosts[h]
	wl := &c.s.Workloads[w]
	if ph.total <= 0 {
		return false
	}
	cores := max(wl.Cores, 1)
	if ph.core > 0 && c.demand[w]/float64(cores) > ph.core {
		return false
	}
	if c.p.Berth.Enabled && c.p.Berth.CoreAware && ph.core > 0 &&
		float64(wl.Request.CPU)/float64(cores) > ph.core {
		return false
	}
	if wl.MemoryReserved || !c.p.CloudSimMemory {
		if ph.memUsed+wl.Request.MemoryMB > c.s.Hosts[h].Capacity.MemoryMB {
			return false
		}
	}
	_, avail, _ := c.usage(h)
	return avail >= c.demand[w]
}

// findHost is PABFD: among suitable hosts not in excluded that would not be
// overloaded after taking w, the one whose power rises least. The power
// difference is computed first so that the (costlier) detector only runs on
// hosts that could still win; the choice is the same as testing in
// CloudSim's order, because a host that does not beat the best difference
// strictly can never be chosen.
func (c *consolidator) findHost(w int, excluded []bool) int {
	best, bestDiff := -1, math.MaxFloat64
	wl := &c.s.Workloads[w]
	for h := range c.hosts {
		if excluded[h] || !c.suitable(h, w) {
			continue
		}
		ph := &c.hosts[h]
		used, _, migIn := c.usage(h)
		// Suitable means the workload fits without over-subscription, so the
		// scheduler would hand it its capped demand.
		after := used + capPerCore(c.demand[w], ph.core, max(wl.Cores, 1))
		before := c.hostPower(h, ph.meteredU)
		if c.p.CloudSimPower {
			// CloudSim reads the utilisation metered at the last update,
			// which placements made earlier in this round do not change, and
			// adds the workload's uncapped demand.
			used = ph.meteredCPU
			after = used + migIn + c.demand[w]
		}
		if c.p.Berth.Enabled && ph.meteredU == 0 && used == 0 {
			// A switched-off host draws nothing (that is how energy is
			// counted), so waking it costs its whole power, not just the
			// slope above idle that CloudSim's PABFD charges.
			before = 0
		}
		diff := c.hostPower(h, after/ph.total) - before
		if diff >= bestDiff {
			continue
		}
		if used != 0 && c.overloaded(h, w) {
			continue
		}
		if c.p.Berth.Enabled && !c.berthFits(h, w) {
			continue
		}
		best, bestDiff = h, diff
	}
	return best
}

func (c *consolidator) add(h, w int) {
	ph := &c.hosts[h]
	wl := &c.s.Workloads[w]
	ph.vms = append(ph.vms, w)
	ph.usageOK = false
	ph.demand += c.demand[w]
	if wl.MemoryReserved || !c.p.CloudSimMemory {
		ph.memUsed += wl.Request.MemoryMB
	}
	c.addHist(&ph.hist, ph.total, wl)
	ph.histLen = trimmedLen(ph.hist[:])
}

func (c *consolidator) remove(h, w int) {
	ph := &c.hosts[h]
	if i := slices.Index(ph.vms, w); i >= 0 {
		ph.vms = slices.Delete(ph.vms, i, i+1)
	}
	c.recompute(h)
}

func (c *consolidator) rng(h int) *rand.Rand {
	return rand.New(rand.NewPCG(c.p.Seed^0x9e3779b97f4a7c15, c.s.Epoch*0x100000001b3+uint64(h)))
}

// movable lists the workloads on h that are not migrating, in bind order.
func (c *consolidator) movable(h int) []int {
	c.cands = c.cands[:0]
	for _, w := range c.hosts[h].vms {
		if c.s.Workloads[w].MigratingTo < 0 && c.s.Workloads[w].Host == h {
			c.cands = append(c.cands, w)
		}
	}
	return c.cands
}

// movableUnderload is movable, plus (with CloudSimUnderload) the workloads
// planned onto h earlier in this round: CloudSim's host lists them and they
// are not yet migrating.
func (c *consolidator) movableUnderload(h int) []int {
	if !c.p.CloudSimUnderload {
		return c.movable(h)
	}
	c.cands = c.cands[:0]
	for _, w := range c.hosts[h].vms {
		if c.s.Workloads[w].MigratingTo < 0 {
			c.cands = append(c.cands, w)
		}
	}
	return c.cands
}

func (c *consolidator) sortByDemand(ws []int) {
	slices.SortStableFunc(ws, func(a, b int) int {
		return cmp.Compare(c.demand[b], c.demand[a])
	})
}

func (c *consolidator) run() []Migration {
	n := len(c.hosts)
	over := make([]bool, n)
	var overList []int
	for h := 0; h < n; h++ {
		if c.overloaded(h, -1) {
			over[h] = true
			overList = append(overList, h)
		}
	}
	// Overload phase: select workloads until each host is no longer overloaded.
	var toMove []int
	from := make(map[int]int)
	for _, h := range overList {
		rng := c.rng(h)
		for {
			cands := c.movable(h)
			i := c.p.Selector.Select(c.s, cands, rng)
			if i < 0 {
				break
			}
			w := cands[i]
			toMove = append(toMove, w)
			from[w] = h
			c.remove(h, w)
			if !c.overloaded(h, -1) {
				break
			}
		}
	}
	c.sortByDemand(toMove)
	var plan []Migration
	targetOfOverload := make([]bool, n)
	for _, w := range toMove {
		h := c.findHost(w, over)
		if h < 0 {
			continue
		}
		c.add(h, w)
		targetOfOverload[h] = true
		plan = append(plan, Migration{Workload: w, From: from[w], To: h, Reason: "overload"})
	}
	if c.p.NoUnderload {
		return plan
	}
	// Underload phase: try to empty the least-utilised active hosts.
	exclSrc := make([]bool, n)
	exclDst := make([]bool, n)
	nExcl := 0
	mark := func(ex []bool, h int) bool {
		if ex[h] {
			return false
		}
		ex[h] = true
		return true
	}
	for h := 0; h < n; h++ {
		off := c.hosts[h].meteredU == 0
		if over[h] || off {
			if mark(exclSrc, h) {
				nExcl++
			}
			exclDst[h] = true
		}
		// CloudSim meant to keep overload-phase targets from becoming sources
		// but built that list from an empty map; we do what was meant (see
		// docs/scheduling.md).
		if targetOfOverload[h] && !c.p.CloudSimUnderload && mark(exclSrc, h) {
			nExcl++
		}
	}
	var placed []Migration
	for nExcl < n {
		src := c.underloadedHost(exclSrc)
		if src < 0 {
			break
		}
		mark(exclSrc, src)
		nExcl++
		exclDst[src] = true
		ws := append([]int(nil), c.movableUnderload(src)...)
		if len(ws) == 0 {
			continue
		}
		c.sortByDemand(ws)
		placed = placed[:0]
		ok := true
		for _, w := range ws {
			h := c.findHost(w, exclDst)
			if h < 0 {
				ok = false
				break
			}
			c.add(h, w)
			placed = append(placed, Migration{Workload: w, From: src, To: h, Reason: "underload"})
		}
		if !ok {
			for i := len(placed) - 1; i >= 0; i-- {
				c.remove(placed[i].To, placed[i].Workload)
			}
			continue
		}
		for _, m := range placed {
			if mark(exclSrc, m.To) {
				nExcl++
			}
		}
		plan = append(plan, placed...)
	}
	return plan
}

// underloadedHost returns the active host with the lowest measured
// utilisation below 1 that is not excluded and not busy with migrations.
func (c *consolidator) underloadedHost(excl []bool) int {
	best, bestU := -1, 1.0
	for h := range c.hosts {
		if excl[h] {
			continue
		}
		u := c.hosts[h].meteredU
		if u > 0 && u < bestU && !c.busyWithMigrations(h) {
			if c.p.Berth.Enabled && !c.berthEvacuable(h) {
				continue
			}
			best, bestU = h, u
		}
	}
	return best
}

// busyWithMigrations is CloudSim's areAllVmsMigratingOutOrAnyVmMigratingIn,
// including its order dependence: the first resident workload decides "no",
// the first migrating-in one "yes".
func (c *consolidator) busyWithMigrations(h int) bool {
	for _, w := range c.hosts[h].vms {
		wl := &c.s.Workloads[w]
		if wl.MigratingTo < 0 {
			return false
		}
		if wl.MigratingTo == h {
			return true
		}
	}
	return true
}

// PlaceNew places workloads that are being created, one after another in
// the given order, and returns the chosen host index for each (-1 where none
// is suitable). Each asks for its full Request.CPU while it is placed. Once
// placed, it holds that CPU on its host but asks for nothing, and hosts keep
// their metered utilisation. That is CloudSim's state while it creates VMs,
// before the first scheduling update. With firstFit, the first suitable host
// in index order is taken (CloudSim's PowerVmAllocationPolicySimple);
// otherwise PABFD chooses, using the policy's detector. The workloads must
// not be on a host yet; the snapshot is not modified.
func PlaceNew(s *Snapshot, ws []int, p ConsolidationPolicy, firstFit bool) []int {
	c := newConsolidator(s, p)
	out := make([]int, len(ws))
	none := make([]bool, len(s.Hosts))
	for i, w := range ws {
		out[i] = -1
		if w < 0 || w >= len(s.Workloads) || s.Workloads[w].Host >= 0 {
			continue
		}
		c.demand[w] = float64(s.Workloads[w].Request.CPU)
		h := -1
		if firstFit {
			for j := range c.hosts {
				if c.suitable(j, w) {
					h = j
					break
				}
			}
		} else {
			h = c.findHost(w, none)
		}
		if h < 0 {
			c.demand[w] = 0
			continue
		}
		c.add(h, w)
		// Created: holds its full request, asks for nothing until updated.
		c.reserved[w] = c.demand[w]
		c.demand[w] = 0
		c.recompute(h)
		out[i] = h
	}
	return out
}
