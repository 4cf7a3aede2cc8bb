package sched

import "testing"

func TestPowerInterpolation(t *testing.T) {
	g4 := PowerHPProLiantML110G4()
	for _, c := range []struct{ u, w float64 }{
		{0, 86}, {0.25, 94.3}, {0.05, 87.7}, {0.5, 102}, {1, 117}, {1.005, 117}, {-1, 86},
	} {
		if got := g4.Power(c.u); !near(got, c.w) {
			t.Errorf("G4 P(%v) = %v, want %v", c.u, got, c.w)
		}
	}
	g5 := PowerHPProLiantML110G5()
	if got := g5.Power(0.451); !near(got, 113.06) {
		t.Errorf("G5 P(0.451) = %v, want 113.06", got)
	}
}

func TestIntervalEnergy(t *testing.T) {
	g4 := PowerHPProLiantML110G4()
	// Trapezoid between 102 W (50%) and 117 W (100%) over 3600 s.
	if got := g4.IntervalEnergy(0.5, 1, 3600); !near(got, (102+117)/2.0*3600) {
		t.Errorf("energy = %v", got)
	}
	// A host that was off at the start of the interval adds nothing.
	if got := g4.IntervalEnergy(0, 1, 3600); got != 0 {
		t.Errorf("energy from 0 = %v, want 0", got)
	}
	if got := JoulesToKWh(3.6e6); got != 1 {
		t.Errorf("3.6 MJ = %v kWh", got)
	}
}

func TestMetricsByHand(t *testing.T) {
	var h [2]HostMeter
	// Host 0: active 0..600; violated (alloc < req) during 300..600.
	h[0].Record(0, 100, 100, true)
	h[0].Record(300, 100, 100, true)
	h[0].Record(300, 50, 100, true) // same time: replaces
	h[0].Record(600, 0, 0, false)
	h[0].Record(900, 0, 0, false)
	// Host 1: active 0..300, never violated.
	h[1].Record(0, 10, 10, true)
	h[1].Record(300, 10, 10, true)
	if h[0].ActiveTime != 600 || h[0].ViolTime != 300 || h[1].ActiveTime != 300 || h[1].ViolTime != 0 {
		t.Fatalf("meters: %+v", h)
	}
	var w [1]WorkloadMeter
	// Migrating for the first 10 s at 90% of 1000 MIPS, then 290 s at full.
	w[0].Record(0, 900, 1000, true)
	w[0].Record(10, 1000, 1000, false)
	w[0].Record(300, 1000, 1000, false)
	m := Summarize(2*3.6e6, h[:], w[:], 3)
	// SLATAH = 300 / 900 (ratio of sums); mean of ratios = (0.5 + 0)/2.
	if !near(m.SLATAH, 1.0/3) || !near(m.SLATAHMeanOfRatios, 0.25) {
		t.Errorf("SLATAH = %v / %v", m.SLATAH, m.SLATAHMeanOfRatios)
	}
	// PDM = 100·10 / (1000·300) = 1/300.
	if !near(m.PDM, 1.0/300) || !near(m.PDMMeanOfRatios, 1.0/300) {
		t.Errorf("PDM = %v", m.PDM)
	}
	if !near(m.SLAV, 1.0/900) || !near(m.ESV, 2.0/900) || m.EnergyKWh != 2 || m.Migrations != 3 {
		t.Errorf("SLAV %v ESV %v E %v", m.SLAV, m.ESV, m.EnergyKWh)
	}
	// Overall: (300000 - 299000) / 300000.
	if !near(m.OverallSLA, 1000.0/300000) {
		t.Errorf("overall = %v", m.OverallSLA)
	}
}

func TestShareCPU(t *testing.T) {
	alloc := make([]float64, 3)
	// Fits: each gets its demand capped at the 1860 core; migrating out 90%.
	ShareCPU(3720, 1860, []float64{2000, 1000, 500}, nil, []ShareRole{Resident, MigratingOut, MigratingIn}, alloc)
	if alloc[0] != 1860 || alloc[1] != 900 || alloc[2] != 50 {
		t.Fatalf("fit: %v", alloc)
	}
	// Over-subscribed: 1860+1860+1000 = 4720 > 3720 → scale 3720/4720, floor.
	ShareCPU(3720, 1860, []float64{2000, 1900, 1000}, nil, []ShareRole{Resident, Resident, Resident}, alloc)
	sc := 3720.0 / 4720
	if alloc[0] != float64(int(1860*sc)) || alloc[2] != float64(int(1000*sc)) {
		t.Fatalf("over: %v", alloc)
	}
}
