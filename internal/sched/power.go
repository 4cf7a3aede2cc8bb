package sched

import "math"

// PowerModel is a SPECpower-style table: the watts drawn at 0%, 10%, ... 100%
// CPU utilisation. Power between two points is linearly interpolated, as in
// CloudSim's PowerModelSpecPower.
type PowerModel struct {
	Name  string
	Watts [11]float64
}

// PowerHPProLiantML110G4 is the HP ProLiant ML110 G4 (Xeon 3040) table used by
// the CloudSim PlanetLab experiments (CCPE12 Table I).
func PowerHPProLiantML110G4() *PowerModel {
	return &PowerModel{Name: "HP ProLiant ML110 G4 (Xeon 3040)",
		Watts: [11]float64{86, 89.4, 92.6, 96, 99.5, 102, 106, 108, 112, 114, 117}}
}

// PowerHPProLiantML110G5 is the HP ProLiant ML110 G5 (Xeon 3075) table.
func PowerHPProLiantML110G5() *PowerModel {
	return &PowerModel{Name: "HP ProLiant ML110 G5 (Xeon 3075)",
		Watts: [11]float64{93.7, 97, 101, 105, 110, 116, 121, 125, 129, 133, 135}}
}

// Power returns the watts drawn at utilisation u (a fraction). u is clamped to
// [0, 1]: CloudSim clamps (1, 1.01) to 1 and throws above; a scheduler must not
// fail on rounding noise, so we clamp everywhere.
func (m *PowerModel) Power(u float64) float64 {
	if !(u > 0) { // also catches NaN
		return m.Watts[0]
	}
	if u >= 1 {
		return m.Watts[10]
	}
	// Same arithmetic as CloudSim so that results match to the last bit.
	if math.Mod(u, 0.1) == 0 {
		return m.Watts[int(u*10)]
	}
	u1 := int(math.Floor(u * 10))
	u2 := int(math.Ceil(u * 10))
	p1, p2 := m.Watts[u1], m.Watts[u2]
	delta := (p2 - p1) / 10
	return p1 + delta*(u-float64(u1)/10)*100
}

// MaxPower is the power at 100% utilisation.
func (m *PowerModel) MaxPower() float64 { return m.Watts[10] }

// IntervalEnergy is the energy in joules (watt-seconds) of one host over an
// interval of dt seconds whose utilisation went linearly from uPrev to uNow:
// the trapezoid rule. A host whose utilisation was 0 at the start of the
// interval is taken to be switched off or asleep and adds nothing; this is
// CloudSim's PowerHost.getEnergyLinearInterpolation.
func (m *PowerModel) IntervalEnergy(uPrev, uNow, dt float64) float64 {
	if uPrev == 0 {
		return 0
	}
	from := m.Power(uPrev)
	to := m.Power(uNow)
	return (from + (to-from)/2) * dt
}

// JoulesToKWh converts watt-seconds to kilowatt-hours.
func JoulesToKWh(j float64) float64 { return j / 3.6e6 }
