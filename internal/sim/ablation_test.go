package sim

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/berth-dev/berth/internal/sched"
)

// TestBerthAblation prints the ablation and sensitivity table of
// docs/scheduling.md. It needs the PlanetLab days and takes about half a minute,
// so it runs only when BERTH_PLANETLAB names the folder that holds them:
//
//	BERTH_PLANETLAB=../shared/data/planetlab go test -run Ablation -v ./internal/sim/
func TestBerthAblation(t *testing.T) {
	root := os.Getenv("BERTH_PLANETLAB")
	if root == "" {
		t.Skip("set BERTH_PLANETLAB to the planetlab data folder to run the ablation")
	}
	var days [][]Trace
	for _, d := range []string{"20110303", "20110306", "20110309", "20110322", "20110325"} {
		tr, err := LoadDay(filepath.Join(root, d))
		if err != nil {
			t.Fatal(err)
		}
		days = append(days, tr)
	}
	full := BerthPolicy()
	type variant struct {
		name string
		p    sched.ConsolidationPolicy
	}
	with := func(name string, f func(*sched.BerthOptions)) variant {
		p := full
		f(&p.Berth)
		return variant{name, p}
	}
	off := 1e9 // a ceiling or evacuation bound that never binds
	variants := []variant{
		{"LR-MMT-1.2 (CloudSim)", sched.ConsolidationPolicy{Detector: sched.LR{S: 1.2}, Selector: sched.MMT{}, CloudSimPower: true, CloudSimUnderload: true}},
		{"LR-MMT-1.2 priced from the plan, wake-up at P(0)", sched.ConsolidationPolicy{Detector: sched.LR{S: 1.2}, Selector: sched.MMT{}}},
		with("+ true wake-up cost (berth's pricing)", func(b *sched.BerthOptions) { b.TargetCeiling, b.EvacuateBelow, b.CoreAware = off, off, false }),
		with("+ core awareness", func(b *sched.BerthOptions) { b.TargetCeiling, b.EvacuateBelow = off, off }),
		with("+ headroom on targets", func(b *sched.BerthOptions) { b.EvacuateBelow = off }),
		{"berth", full},
		with("evacuate below 0.4", func(b *sched.BerthOptions) { b.EvacuateBelow = 0.4 }),
		with("evacuate below 0.6", func(b *sched.BerthOptions) { b.EvacuateBelow = 0.6 }),
		with("ceiling 0.7", func(b *sched.BerthOptions) { b.TargetCeiling = 0.7 }),
		with("ceiling 0.9", func(b *sched.BerthOptions) { b.TargetCeiling = 0.9 }),
		with("window 6 samples", func(b *sched.BerthOptions) { b.Window = 6 }),
		with("window 24 samples", func(b *sched.BerthOptions) { b.Window = 24 }),
	}
	med := func(xs []float64) float64 { s := slices.Clone(xs); slices.Sort(s); return s[len(s)/2] }
	for _, v := range variants {
		var esv, e, mig, slatah, pdm []float64
		for _, tr := range days {
			r, err := RunPlanetLab(tr, Policy{Name: v.name, Kind: Migration, Consolidation: v.p})
			if err != nil {
				t.Fatal(err)
			}
			esv = append(esv, r.Metrics.ESV)
			e = append(e, r.Metrics.EnergyKWh)
			mig = append(mig, float64(r.Metrics.Migrations))
			slatah = append(slatah, r.Metrics.SLATAH)
			pdm = append(pdm, r.Metrics.PDM)
		}
		t.Logf("| %s | %.3f | %.1f | %.2f%% | %.3f%% | %.0f |", v.name, med(esv)*1e3, med(e), med(slatah)*100, med(pdm)*100, med(mig))
	}
}
