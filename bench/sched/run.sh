#!/bin/sh
# Scheduler benchmarks: placement throughput at scale and simulated-day wall
# time. Results go to docs/benchmarks.md ("Scheduler" section) by hand.
#
# Usage: bench/sched/run.sh [PLANETLAB_DIR]
#   PLANETLAB_DIR defaults to ../shared/data/planetlab relative to the repo.
# Runs on 2 CPUs (GOMAXPROCS=2, taskset if available) to match the target.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
data=${1:-$repo/../shared/data/planetlab}
cd "$repo"
pin=""
command -v taskset >/dev/null 2>&1 && pin="taskset -c 0,1"
export GOMAXPROCS=2

echo "== go version: $(go version)"
echo "== CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"

echo "== Go benchmarks (placement, 1M-task scale run, one PlanetLab day)"
$pin go test -run '^$' -bench 'Place$' -benchtime 2000000x -benchmem ./bench/sched/
BERTH_PLANETLAB_DAY="$data/20110303" $pin go test -run '^$' -bench 'Scale1M|PlanetLabDay' -benchtime 3x -benchmem ./bench/sched/

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if go run ./cmd/berth sim scale --help 2>/dev/null | grep -q -- --nodes; then
	go build -o "$tmp/berth" ./cmd/berth
	echo "== berth sim scale --nodes 5000 --tasks 1000000 --format json"
	$pin "$tmp/berth" sim scale --nodes 5000 --tasks 1000000 --format json
	echo "== berth sim planetlab, one day per policy (wall seconds)"
	for p in npa dvfs thr-mmt-0.8 mad-mmt-2.5 lr-mmt-1.2 berth; do
		for d in "$data"/2011*; do
			s=$(date +%s.%N)
			out=$($pin "$tmp/berth" sim planetlab --trace "$d" --policy "$p" --format json)
			e=$(date +%s.%N)
			printf '%s %s %.2fs %s\n' "$p" "$(basename "$d")" "$(echo "$e - $s" | bc)" "$out"
		done
	done
else
	echo "== cmd/berth has no 'sim' command yet; skipped the CLI runs"
fi
