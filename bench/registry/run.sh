#!/usr/bin/env bash
# Side-by-side pull benchmark (issue: registries): pull a 5-layer, 200 MB image (random data,
# gzip layers) from a registry on 127.0.0.1 with berth, `podman pull` and `skopeo copy` into
# containers-storage, each into fresh private storage. Usage: bench/registry/run.sh [runs]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/../lib/peers.sh"
RUNS=${1:-3}
BERTH=${BERTH:-$top/bin/berth}
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
[ -x "$BERTH" ] || (cd "$top" && make build >/dev/null)
bench_install_peers podman skopeo
bench_fix_podman_ulimits

work=$(mktemp -d /tmp/berth-regbench-XXXXXX)
exec_root=$(mktemp -d /run/berth-regbench-XXXXXX)
reg_pid=; daemon_pid=
cleanup() {
  set +e
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null && wait "$reg_pid" 2>/dev/null
  podman --root "$work/podman" --runroot "$work/podman-run" system reset -f >/dev/null 2>&1
  umount -R "$work"/podman/overlay 2>/dev/null
  rm -rf "$work" "$exec_root"
}
trap cleanup EXIT

(cd "$top" && go build -o "$work/regserve" ./bench/registry/regserve)
"$work/regserve" > "$work/addr" &
reg_pid=$!
for _ in $(seq 600); do [ -s "$work/addr" ] && break; sleep 0.1; done
addr=$(cat "$work/addr")
[ -n "$addr" ] || { echo "registry did not start" >&2; exit 1; }
img=$addr/bench/pull:latest

start_berth() {
  rm -rf "$work/berth"
  setsid "$BERTH" daemon --root "$work/berth" --exec-root "$exec_root" -H "unix://$exec_root/b.sock" >"$work/daemon.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 100); do BERTH_HOST=unix://$exec_root/b.sock "$BERTH" version >/dev/null 2>&1 && return; sleep 0.05; done
}
stop_berth() { kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true; daemon_pid=; }
pod() { podman --root "$work/podman" --runroot "$work/podman-run" --events-backend none "$@"; }
reset_pod() { pod system reset -f >/dev/null 2>&1 || true; umount -R "$work/podman/overlay" 2>/dev/null || true; rm -rf "$work/podman" "$work/podman-run"; }
ms() { local t0 t1; t0=$(now_ns); "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; return 1; }; t1=$(now_ns); awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) / 1e6 }'; }
best() { sort -n | head -1; }

export BERTH_HOST=unix://$exec_root/b.sock
b=(); p=(); s=()
for _ in $(seq "$RUNS"); do
  start_berth; b+=("$(ms "$BERTH" pull -q "$img")"); stop_berth
  reset_pod; p+=("$(ms pod pull -q --tls-verify=false "$img")")
  reset_pod; s+=("$(ms skopeo copy -q --src-tls-verify=false "docker://$img" "containers-storage:[overlay@$work/podman+$work/podman-run]$img")")
done
bp=$(printf '%s\n' "${b[@]}" | best); pp=$(printf '%s\n' "${p[@]}" | best); sp=$(printf '%s\n' "${s[@]}" | best)
fastest=$(printf '%s\n' "$pp" "$sp" | best)
cat <<EOT
### Pull ($(date -u +%Y-%m-%d), $(nproc) cores; best of $RUNS, fresh storage each run)

| workload | berth | podman | skopeo | fastest peer / berth |
|---|---|---|---|---|
| pull 5 x 40 MB gzip layers from 127.0.0.1, ms | $bp | $pp | $sp | $(ratio "$fastest" "$bp") |
EOT
