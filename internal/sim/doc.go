// Package sim is berth's trace-driven simulator. It drives the pure
// scheduler in internal/sched over simulated hosts: the PlanetLab/CloudSim
// VM-consolidation benchmark of Beloglazov & Buyya (CCPE 2012), and a
// synthetic placement-throughput test.
//
// The simulation engine itself is deterministic and reads no clock; only
// the command layer (cmd.go) touches the file system, the clock and
// /proc. The package must not talk to a berth daemon or change any host
// state: it only reads trace files and writes to its output.
package sim
