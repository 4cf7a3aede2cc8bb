package sched

import "math"

// ShareRole is how a workload sits on a host for CPU sharing.
type ShareRole uint8

const (
	// Resident workloads get their demand (capped per core).
	Resident ShareRole = iota
	// MigratingOut workloads run on the source during a migration at 90% of
	// their demand: the 10% performance degradation of live migration.
	MigratingOut
	// MigratingIn workloads have 10% of their demand reserved on the target
	// for the length of the migration.
	MigratingIn
)

// ShareCPU divides a host's CPU among its workloads the way CloudSim's
// VmSchedulerTimeSharedOverSubscription does. Each workload's demand is capped
// at coreCPU per core (coreCPU 0: no cap); migrating-in workloads count at
// 10%. If the capped demands fit in total, each gets its capped demand
// (×0.9 migrating out, ×0.1 migrating in); otherwise every share is scaled by
// total ÷ (sum of demands) and floored. alloc receives the shares and must be
// as long as demand.
func ShareCPU(total, coreCPU float64, demand []float64, cores []int, role []ShareRole, alloc []float64) {
	avail := total
	over := false
	for i, d := range demand {
		c := capPerCore(d, coreCPU, coreCount(cores, i))
		if role[i] == MigratingIn {
			c *= 0.1
		}
		if !over && avail >= c {
			avail -= c
		} else if c > 0 || over {
			over = true
		}
	}
	if !over {
		for i, d := range demand {
			c := capPerCore(d, coreCPU, coreCount(cores, i))
			switch role[i] {
			case MigratingOut:
				c *= 0.9
			case MigratingIn:
				c *= 0.1
			}
			alloc[i] = c
		}
		return
	}
	var sum float64
	for i, d := range demand {
		c := capPerCore(d, coreCPU, coreCount(cores, i))
		if role[i] == MigratingIn {
			c *= 0.1
		}
		sum += c
	}
	scale := total / sum
	for i, d := range demand {
		c := capPerCore(d, coreCPU, coreCount(cores, i))
		switch role[i] {
		case MigratingOut:
			c = math.Floor(c * scale * 0.9)
		case MigratingIn:
			c = math.Floor(c * 0.1 * scale)
		default:
			c = math.Floor(c * scale)
		}
		alloc[i] = c
	}
}

func coreCount(cores []int, i int) int {
	if cores == nil || cores[i] < 1 {
		return 1
	}
	return cores[i]
}

// capPerCore caps a demand spread over n cores at coreCPU per core.
func capPerCore(d, coreCPU float64, n int) float64 {
	if coreCPU <= 0 {
		return d
	}
	per := d / float64(n)
	if per > coreCPU {
		return coreCPU * float64(n)
	}
	return d
}
