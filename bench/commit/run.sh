#!/usr/bin/env bash
# Side-by-side commit benchmark (issue 5): the time to turn a container with ~100 MB of
# changes (one 64 MiB file and 1000 files of 36 KiB, random content) into an image.
#   berth commit CTR IMG    (WriteDiff of the overlay upper dir -> layer blob -> snapshot)
#   podman commit CTR IMG   (containers/storage, private root)
# Each round writes fresh random data in a new container (not timed), then times one commit,
# so that no run can reuse an earlier identical layer. Prints a Markdown table.
# usage: bench/commit/run.sh [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/../lib/peers.sh"
N=${1:-5}
BERTH=${BERTH:-$top/bin/berth}
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
[ -x "$BERTH" ] || (cd "$top" && make build >/dev/null)

bench_install_peers podman crun
bench_fix_hugetlb
bench_fix_podman_ulimits

work=$(mktemp -d /tmp/berth-bench-XXXXXX)
exec_root=$(mktemp -d /run/berth-bench-XXXXXX)
sock=$exec_root/berth.sock
daemon_pid=
cleanup() {
  set +e
  if [ -n "$daemon_pid" ]; then
    BERTH_HOST=unix://$sock "$BERTH" rm -f $(BERTH_HOST=unix://$sock "$BERTH" ps -aq 2>/dev/null) >/dev/null 2>&1
    kill "$daemon_pid" 2>/dev/null; wait "$daemon_pid" 2>/dev/null
  fi
  podman --root "$work/podman" --runroot "$work/podman-run" rm -af >/dev/null 2>&1
  podman --root "$work/podman" --runroot "$work/podman-run" system reset -f >/dev/null 2>&1
  umount -R "$work"/podman/overlay/*/merged 2>/dev/null
  umount -l "$exec_root" 2>/dev/null  # the daemon mounts a tmpfs there when /run is on disk
  rm -rf "$work" "$exec_root"
  for d in /sys/fs/cgroup/*/berth-bench /sys/fs/cgroup/berth-bench; do rmdir "$d" 2>/dev/null; done
}
trap cleanup EXIT

"$top/scripts/busybox-image.sh" "$work/busybox.tar"
# 64 MiB in one file plus 1000 files of 36 KiB: ~100 MB, large and small files both.
fill='dd if=/dev/urandom of=/big bs=1M count=64 2>/dev/null && mkdir /many && i=0 && while [ $i -lt 1000 ]; do dd if=/dev/urandom of=/many/f$i bs=36k count=1 2>/dev/null; i=$((i+1)); done'

setsid "$BERTH" daemon --root "$work/berth" --exec-root "$exec_root" -H "unix://$sock" --cgroup-parent /berth-bench >"$work/daemon.log" 2>&1 &
daemon_pid=$!
export BERTH_HOST=unix://$sock
for _ in $(seq 100); do "$BERTH" version >/dev/null 2>&1 && break; sleep 0.1; done
"$BERTH" import - busybox < "$work/busybox.tar" >/dev/null

pod import "$work/busybox.tar" localhost/busybox >/dev/null

# timed CMD... runs CMD once and prints its wall milliseconds.
timed() {
  local t0 t1
  t0=$(now_ns)
  "$@" >/dev/null
  t1=$(now_ns)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", (b - a) / 1e6 }'
}
mean() { awk '{ s += $1 } END { printf "%.1f", s / NR }'; }

berth_t=(); podman_t=(); berth_run=(); podman_run=()
for r in $(seq "$N"); do
  "$BERTH" run --name "b$r" --network none busybox sh -c "$fill"
  sync
  berth_t+=("$(timed "$BERTH" commit "b$r" "bc:$r")")
  berth_run+=("$(timed "$BERTH" run --rm --network none "bc:$r" true)")
  pod run --name "p$r" --network none localhost/busybox sh -c "$fill"
  sync
  podman_t+=("$(timed pod commit -q "p$r" "pc:$r")")
  podman_run+=("$(timed pod run --rm --network none "pc:$r" true)")
done
size=$("$BERTH" image inspect -f '{{.Size}}' bc:1)
b=$(printf '%s\n' "${berth_t[@]}" | mean); p=$(printf '%s\n' "${podman_t[@]}" | mean)
br=$(printf '%s\n' "${berth_run[@]}" | mean); pr=$(printf '%s\n' "${podman_run[@]}" | mean)

cat <<EOT
### Commit ($(date -u +%Y-%m-%d), $(nproc) cores, kernel $(uname -r))

Container changes: $(awk -v s="$size" 'BEGIN { printf "%.0f", s / 1e6 }') MB image (busybox + 64 MiB file + 1000 x 36 KiB files, random). Mean of $N rounds.

| workload | berth | podman | podman/berth |
|---|---|---|---|
| \`commit CTR IMG\`, ms | $b | $p | $(ratio "$p" "$b") |
| first \`run --rm IMG true\` of the new image, ms | $br | $pr | $(ratio "$pr" "$br") |

Per round, berth: ${berth_t[*]} ms; podman: ${podman_t[*]} ms.
EOT
