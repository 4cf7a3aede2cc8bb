#!/usr/bin/env bash
# Interleaved A/B of two berth binaries on the concurrent workload: rounds of P at once of
# `run --rm --network none busybox true` against a daemon of each (own roots, cgroup parents, nft
# tables and bridges), A then B in each round. Prints the wall milliseconds of each round.
#   bench/containers/ab-parallel.sh BIN_A BIN_B [ROUNDS] [P]
set -euo pipefail
A=$(realpath "$1") B=$(realpath "$2") R=${3:-5} P=${4:-50}
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
img=$(mktemp /tmp/berth-abp-img-XXXXXX.tar)
"$here/../../scripts/busybox-image.sh" "$img" >/dev/null
tag=abp$$
pids=() dirs=()
cleanup() {
	set +e
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "${dirs[@]}" "$img"
	for d in /sys/fs/cgroup/*/"$tag"? /sys/fs/cgroup/"$tag"?; do rmdir "$d" 2>/dev/null; done
}
trap cleanup EXIT
start() { # BIN NAME -> sets SOCK
	local w e
	w=$(mktemp -d /tmp/berth-abp-XXXXXX) e=$(mktemp -d /run/berth-abp-XXXXXX)
	dirs+=("$w" "$e")
	setsid "$1" daemon --root "$w/root" --exec-root "$e" -H "unix://$e/s.sock" --cgroup-parent "$tag$2" \
		--nftables-table "berth-$tag$2" --bridge "br$tag$2" --bridge-prefix "$tag$2-" >"$w/daemon.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do BERTH_HOST=unix://$e/s.sock "$1" version >/dev/null 2>&1 && break; sleep 0.1; done
	BERTH_HOST=unix://$e/s.sock "$1" import - busybox <"$img" >/dev/null
	BERTH_HOST=unix://$e/s.sock "$1" run --rm --network none busybox true
	SOCK=unix://$e/s.sock
}
start "$A" a; SA=$SOCK
start "$B" b; SB=$SOCK
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
