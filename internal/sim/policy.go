package sim

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/sched"
	"github.com/containerd/errdefs"
)

// PolicyKind is the family of a simulation policy.
type PolicyKind uint8

const (
	// NPA: no power awareness; every host draws maximum power all the time.
	NPA PolicyKind = iota
	// DVFS: power follows utilisation, no migrations.
	DVFS
	// Migration: dynamic consolidation with a detector and a selector.
	Migration
)

// Policy is a parsed --policy value.
type Policy struct {
	Name string
	Kind PolicyKind
	// Consolidation is set for Migration policies.
	Consolidation sched.ConsolidationPolicy
	// KeepIdleVMs keeps VMs that ask for no CPU. CloudSim destroys them: at
	// every datacenter update it deallocates each non-migrating VM whose
	// requested MIPS is 0, as if it had finished, so PlanetLab VMs vanish at
	// their first pair of zero samples. The simulator does the same unless
	// this is set.
	KeepIdleVMs bool
	// TickOffset (seconds, 0 ≤ x < Interval) is how long after each sample
	// point the scheduling tick reads the traces. 0 is the CloudSim of the
	// paper's time (the commit that added the PlanetLab data, January 2012:
	// ticks at 300, 600, ...; PowerVm records history when the time is a
	// multiple of 300), and it reproduces CCPE12 Table V. CloudSim 3.0.3 ticks
	// 0.1 s later (CloudSim303TickOffset), so a single zero sample leaves a
	// trickle of demand and a VM is destroyed only at two zeros in a row.
	TickOffset float64
}

// BerthPolicy is berth's recommended consolidation policy. Its parameters
// are chosen from first principles, not fitted to trace days; see
// docs/scheduling.md.
func BerthPolicy() sched.ConsolidationPolicy {
	return sched.ConsolidationPolicy{
		Detector: sched.LR{S: 1.2, Mode: sched.RegressionLoess},
		Selector: sched.MMT{},
		Berth: sched.BerthOptions{
			Enabled:       true,
			TargetCeiling: 0.8,
			Quantile:      0.9,
			Window:        12,
			EvacuateBelow: 0.5,
			CoreAware:     true,
		},
	}
}

// ParsePolicy parses npa, dvfs, berth, or DETECTOR-SELECTION-PARAM such as
// thr-mmt-0.8, iqr-mmt-1.5, mad-mmt-2.5, lr-mmt-1.2, lrr-mmt-1.2 (also mc, mu,
// rs selections and the ols detector: CloudSim ≥ 3.0.3's unweighted LR).
func ParsePolicy(name string, seed uint64) (Policy, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	p := Policy{Name: n}
	switch n {
	case "npa":
		p.Kind = NPA
		return p, nil
	case "dvfs":
		p.Kind = DVFS
		return p, nil
	case "berth":
		p.Kind = Migration
		p.Consolidation = BerthPolicy()
		p.Consolidation.Seed = seed
		return p, nil
	}
	parts := strings.Split(n, "-")
	if len(parts) != 3 {
		return Policy{}, policyErr(name, "expected npa, dvfs, berth or DETECTOR-SELECTION-PARAM")
	}
	param, err := strconv.ParseFloat(parts[2], 64)
	if err != nil || !(param >= 0 && param <= 10) { // also rejects NaN
		return Policy{}, policyErr(name, fmt.Sprintf("parameter %q is not a number from 0 to 10", parts[2]))
	}
	if parts[0] == "thr" && (param <= 0 || param > 1) {
		return Policy{}, policyErr(name, "a THR threshold must be in (0, 1]")
	}
	det, err := sched.ParseDetector(parts[0], param)
	if err != nil {
		return Policy{}, policyErr(name, err.Error())
	}
	sel, err := sched.ParseSelector(parts[1])
	if err != nil {
		return Policy{}, policyErr(name, err.Error())
	}
	p.Kind = Migration
	// PABFD prices hosts, and the underload phase picks its sources, as
	// CloudSim does (see sched.ConsolidationPolicy).
	p.Consolidation = sched.ConsolidationPolicy{Detector: det, Selector: sel, Seed: seed, CloudSimPower: true, CloudSimUnderload: true}
	return p, nil
}

func policyErr(name, why string) error {
	return fmt.Errorf("--policy %q: %s; valid examples: npa, dvfs, thr-mmt-0.8, iqr-mmt-1.5, mad-mmt-2.5, lrr-mmt-1.2, lr-mmt-1.2, berth: %w",
		name, why, errdefs.ErrInvalidArgument)
}
