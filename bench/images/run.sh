#!/usr/bin/env bash
# Side-by-side image benchmark: load a docker-archive (5 gzip layers of 40 MB random data,
# 200 MB in all) and import a root filesystem tarball, with berth, podman and skopeo, each into
# fresh private storage. Prints a Markdown table. Usage: bench/images/run.sh [runs]
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

work=$(mktemp -d /tmp/berth-imgbench-XXXXXX)
exec_root=$(mktemp -d /run/berth-imgbench-XXXXXX)
daemon_pid=
cleanup() {
  set +e
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  podman --root "$work/podman" --runroot "$work/podman-run" system reset -f >/dev/null 2>&1
  umount -R "$work"/podman/overlay 2>/dev/null
  rm -rf "$work" "$exec_root"
}
trap cleanup EXIT

(cd "$top" && go run ./bench/images/mkimage -o "$work/image.tar")
"$top/scripts/busybox-image.sh" "$work/rootfs.tar"
# A bigger root filesystem for import: busybox plus 100 MB of files.
mkdir -p "$work/rootfs/data"
tar -C "$work/rootfs" -xf "$work/rootfs.tar"
for i in $(seq 50); do head -c 2000000 /dev/urandom > "$work/rootfs/data/f$i"; done
tar -C "$work/rootfs" -cf "$work/rootfs-big.tar" .


export BERTH_HOST=unix://$exec_root/b.sock
bl=(); pl=(); sl=(); bi=(); pi=()
for _ in $(seq "$RUNS"); do
  start_berth; bl+=("$(ms "$BERTH" load -q -i "$work/image.tar")"); stop_berth
  start_berth; bi+=("$(ms "$BERTH" import "$work/rootfs-big.tar" big:latest)"); stop_berth
  reset_pod; pl+=("$(ms pod load -q -i "$work/image.tar")")
  reset_pod; pi+=("$(ms pod import "$work/rootfs-big.tar" localhost/big:latest)")
  reset_pod; sl+=("$(ms skopeo copy -q "docker-archive:$work/image.tar" "containers-storage:[overlay@$work/podman+$work/podman-run]localhost/bench:latest")")
done
b_load=$(printf '%s\n' "${bl[@]}" | best); p_load=$(printf '%s\n' "${pl[@]}" | best); s_load=$(printf '%s\n' "${sl[@]}" | best)
b_imp=$(printf '%s\n' "${bi[@]}" | best); p_imp=$(printf '%s\n' "${pi[@]}" | best)
cat <<EOT
### Images ($(date -u +%Y-%m-%d), $(nproc) cores; best of $RUNS, fresh storage each run)

| workload | berth | podman | skopeo | podman/berth | skopeo/berth |
|---|---|---|---|---|---|
| load docker-archive, 5 x 40 MB gzip layers, ms | $b_load | $p_load | $s_load | $(ratio "$p_load" "$b_load") | $(ratio "$s_load" "$b_load") |
| import 102 MB rootfs tar, ms | $b_imp | $p_imp | – | $(ratio "$p_imp" "$b_imp") | – |
EOT
