#!/usr/bin/env bash
# Interleaved A/B of two berth binaries on the concurrent workload: rounds of P at once of
# `run --rm --network none busybox true` against a daemon of each (own roots, cgroup parents, nft
# tables and bridges), A then B in each round. Prints the wall milliseconds of each round.
#   bench/containers/ab-parallel.sh BIN_A BIN_B [ROUNDS] [P]
set -euo pipefail
A=$(realpath "$1") B=$(realpath "$2") R=${3:-5} P=${4:-50}
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/abdaemons.sh"
ab_start "$A" a; SA=$SOCK
ab_start "$B" b; SB=$SOCK
round() { # BIN SOCK -> wall ms of P runs at once
	local t0=${EPOCHREALTIME/./} i
	for ((i = 0; i < P; i++)); do BERTH_HOST=$2 "$1" run --rm --network none busybox true >/dev/null 2>&1 & done
	wait
	echo $(((${EPOCHREALTIME/./} - t0) / 1000))
}
ra=() rb=()
for _ in $(seq "$R"); do ra+=("$(round "$A" "$SA")"); rb+=("$(round "$B" "$SB")"); done
mean() { printf '%s\n' "$@" | awk '{s+=$1} END {printf "%d", s/NR}'; }
echo "A $A: ${ra[*]} (mean $(mean "${ra[@]}") ms)"
echo "B $B: ${rb[*]} (mean $(mean "${rb[@]}") ms)"
