// Package sched is berth's scheduler core: placement, admission control,
// consolidation (overload/underload handling with a migration plan) and the
// accounting of energy and SLA metrics.
//
// The package is pure in the sense of etcd's raft library: it does no I/O,
// reads no clock and keeps no hidden state. Callers hand it a Snapshot of the
// cluster and get back a Plan (from Place) or a list of Migrations (from
// Rebalance); applying them is the caller's job. Given the same snapshot,
// request and seed, every function returns the same result byte for byte,
// which is what lets the trace-driven simulator (internal/sim) and the live
// cluster run the same code.
//
// Vocabulary, defined once:
//
//   - host: a machine with a CPU capacity (millicores or MIPS; the unit is the
//     caller's, used consistently), memory, a slot count and optionally a
//     SPECpower model.
//   - workload: a container or VM with a request and, for consolidation, a
//     current CPU demand and a utilisation history (newest sample first).
//   - plan: the outcome of placing one workload: the chosen host, or why it was
//     queued or refused.
//   - migration: move one workload from its host to another; Rebalance returns
//     them in the order they should be started.
//
// Placement is a pipeline of small named stages in the manner of Nomad's
// scheduler stack: a seeded random host order, feasibility checks, a ranking
// stage and a limit on how many feasible candidates are scored.
//
// This package must not do I/O, read the time, spawn goroutines or use a
// global random source; randomness comes only from seeds in its inputs.
package sched
