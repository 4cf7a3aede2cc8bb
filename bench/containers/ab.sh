#!/usr/bin/env bash
# Interleaved A/B of two berth binaries: `run --rm --network none busybox true` alternately
# against a daemon of each (own roots, cgroup parents, nft tables and bridges), so that the
# machine's drift over minutes hits both alike. Prints the mean and median µs of each.
#   bench/containers/ab.sh BIN_A BIN_B [N]
# With BIN_A = BIN_B it measures one binary alone on a fresh daemon (the figure in
# docs/benchmarks.md next to hyperfine's).
set -euo pipefail
A=$(realpath "$1") B=$(realpath "$2") N=${3:-60}
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/abdaemons.sh"
ab_start "$A" a; SA=$SOCK
ab_start "$B" b; SB=$SOCK
sleep 1
for b in "$A $SA" "$B $SB"; do set -- $b; BERTH_HOST=$2 "$1" run --rm --network none busybox true; done
ta=() tb=()
for _ in $(seq "$N"); do
	t0=$(date +%s%N); BERTH_HOST=$SA "$A" run --rm --network none busybox true
	t1=$(date +%s%N); BERTH_HOST=$SB "$B" run --rm --network none busybox true
	t2=$(date +%s%N)
	ta+=($(((t1 - t0) / 1000))) tb+=($(((t2 - t1) / 1000)))
done
stats() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1; s+=$1} END {printf "mean %d us, median %d us", s/NR, v[int((NR+1)/2)]}'; }
echo "A $A: $(stats "${ta[@]}")"
echo "B $B: $(stats "${tb[@]}")"
