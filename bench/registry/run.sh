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
