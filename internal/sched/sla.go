package sched

// HostMeter accumulates one host's SLATAH terms from its state history, the
// way CloudSim's Helper.getSlaTimePerActiveHost walks HostStateHistoryEntry:
// an interval counts as active if the host was active at its start, and as
// violated if, at its start, the host delivered less CPU than was asked of
// it. Records at the same time replace each other (the last one wins).
// Times come from the caller: the meter reads no clock.
type HostMeter struct {
	started              bool
	prevTime             float64
	prevAlloc, prevReq   float64
	prevActive           bool
	ActiveTime, ViolTime float64
}

// Record adds the host's state at time t.
func (m *HostMeter) Record(t, allocated, requested float64, active bool) {
	if m.started && t > m.prevTime {
		if m.prevActive {
			dt := t - m.prevTime
			m.ActiveTime += dt
			if m.prevAlloc < m.prevReq {
				m.ViolTime += dt
			}
		}
	}
	m.started = true
	m.prevTime, m.prevAlloc, m.prevReq, m.prevActive = t, allocated, requested, active
}

// WorkloadMeter accumulates one workload's requested and allocated CPU-time
// and the shortfall while migrating (PDM), as Helper.getSlaMetrics does.
type WorkloadMeter struct {
	started            bool
	prevTime           float64
	prevAlloc, prevReq float64
	prevMigrating      bool
	// Requested and Allocated are ∫ CPU dt; MigrationShortfall is
	// ∫ (requested − allocated) dt over intervals spent migrating.
	Requested, Allocated, MigrationShortfall float64
}

// Record adds the workload's state at time t.
func (m *WorkloadMeter) Record(t, allocated, requested float64, migrating bool) {
	if m.started && t > m.prevTime {
		dt := t - m.prevTime
		m.Allocated += m.prevAlloc * dt
		m.Requested += m.prevReq * dt
		if m.prevAlloc < m.prevReq && m.prevMigrating {
			m.MigrationShortfall += (m.prevReq - m.prevAlloc) * dt
		}
	}
	m.started = true
	m.prevTime, m.prevAlloc, m.prevReq, m.prevMigrating = t, allocated, requested, migrating
}

// Metrics are the CCPE12 consolidation metrics. All ratios are fractions.
type Metrics struct {
	EnergyKWh float64
	// SLATAH is the share of active-host time spent with demand not met:
	// Σ violation time ÷ Σ active time over hosts (CloudSim's ratio of sums).
	SLATAH float64
	// PDM is the performance degradation due to migration:
	// Σ migration shortfall ÷ Σ requested CPU-time over workloads (ratio of
	// sums, as CloudSim computes it).
	PDM float64
	// SLAV = SLATAH × PDM; ESV = EnergyKWh × SLAV.
	SLAV, ESV float64
	// OverallSLA is (Σ requested − Σ allocated) ÷ Σ requested CPU-time.
	OverallSLA float64
	// SLATAHMeanOfRatios and PDMMeanOfRatios are the paper's equations 21
	// and 22 taken literally (means of per-host and per-workload ratios).
	SLATAHMeanOfRatios, PDMMeanOfRatios float64
	Migrations                          int
}

// Summarize computes Metrics from energy in joules, the meters and the
// number of migrations started.
func Summarize(energyJ float64, hosts []HostMeter, workloads []WorkloadMeter, migrations int) Metrics {
	var m Metrics
	m.EnergyKWh = JoulesToKWh(energyJ)
	m.Migrations = migrations
	var act, viol, ratioSum float64
	nAct := 0
	for i := range hosts {
		act += hosts[i].ActiveTime
		viol += hosts[i].ViolTime
		if hosts[i].ActiveTime > 0 {
			ratioSum += hosts[i].ViolTime / hosts[i].ActiveTime
			nAct++
		}
	}
	if act > 0 {
		m.SLATAH = viol / act
	}
	if nAct > 0 {
		m.SLATAHMeanOfRatios = ratioSum / float64(nAct)
	}
	var req, alloc, short, pdmSum float64
	nW := 0
	for i := range workloads {
		w := &workloads[i]
		req += w.Requested
		alloc += w.Allocated
		short += w.MigrationShortfall
		if w.Requested > 0 {
			pdmSum += w.MigrationShortfall / w.Requested
			nW++
		}
	}
	if req > 0 {
		m.PDM = short / req
		m.OverallSLA = (req - alloc) / req
	}
	if nW > 0 {
		m.PDMMeanOfRatios = pdmSum / float64(nW)
	}
	m.SLAV = m.SLATAH * m.PDM
	m.ESV = m.EnergyKWh * m.SLAV
	return m
}
