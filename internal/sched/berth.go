package sched

import "slices"

// berthFits is the berth policy's extra admission test for a migration
// target: the host's recent demand with the workload added must stay under
// the ceiling not just now but at a high quantile of the recent window, so a
// target is not pushed into overload by the next peak.
func (c *consolidator) berthFits(h, w int) bool {
	b := c.p.Berth
	ph := &c.hosts[h]
	wl := &c.s.Workloads[w]
	if (ph.demand+c.demand[w])/ph.total > b.TargetCeiling {
		return false
	}
	win := min(b.Window, HistoryLength)
	c.hbuf = ph.hist
	c.addHist(&c.hbuf, ph.total, wl)
	n := min(win, trimmedLen(c.hbuf[:]))
	if n == 0 {
		return true
	}
	q := c.scratch[:n]
	copy(q, c.hbuf[:n])
	slices.Sort(q)
	idx := int(b.Quantile*float64(n-1) + 0.5)
	return q[min(idx, n-1)] <= b.TargetCeiling
}

// berthEvacuable says whether an under-utilised host is worth emptying: only
// when its recent mean utilisation is low, so hosts that are briefly idle
// between peaks are not drained and refilled.
func (c *consolidator) berthEvacuable(h int) bool {
	b := c.p.Berth
	ph := &c.hosts[h]
	n := min(b.Window, ph.histLen)
	if n == 0 {
		return ph.meteredU < b.EvacuateBelow
	}
	var sum float64
	for _, v := range ph.hist[:n] {
		sum += v
	}
	return sum/float64(n) < b.EvacuateBelow
}
