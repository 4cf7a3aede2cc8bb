#!/usr/bin/env bash
# Side-by-side container start benchmark (issue: containers).
#   berth run --rm --network none busybox true   (end to end: CLI -> API -> daemon -> shim -> runtime)
#   podman run --rm --network none busybox true  (same image imported)
#   crun run / runc run on a prepared bundle      (bare create+start+delete, no image handling)
# Sequential (N runs) and concurrent (P at once), plus the idle memory of a running container's
# shim. Prints a Markdown table; usage: bench/containers/run.sh [N] [P]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/../lib/peers.sh"
N=${1:-50}
P=${2:-50}
BERTH=${BERTH:-$top/bin/berth}
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
[ -x "$BERTH" ] || (cd "$top" && make build >/dev/null)

bench_install_peers podman crun runc
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
  for r in crun runc; do
    for id in $($r --root "$work/$r-state" list -q 2>/dev/null); do $r --root "$work/$r-state" delete -f "$id" >/dev/null 2>&1; done
  done
  umount -R "$work"/podman/overlay/*/merged 2>/dev/null
  umount -l "$exec_root" 2>/dev/null  # the daemon mounts a tmpfs there when /run is on disk
  rm -rf "$work" "$exec_root"
  for d in /sys/fs/cgroup/*/berth-bench /sys/fs/cgroup/berth-bench; do rmdir "$d" 2>/dev/null; done
}
trap cleanup EXIT

"$top/scripts/busybox-image.sh" "$work/busybox.tar"

# berth
setsid "$BERTH" daemon --root "$work/berth" --exec-root "$exec_root" -H "unix://$sock" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
export BERTH_HOST=unix://$sock
for _ in $(seq 100); do "$BERTH" version >/dev/null 2>&1 && break; sleep 0.1; done
"$BERTH" import - busybox < "$work/busybox.tar" >/dev/null
"$BERTH" run --rm --network none busybox true   # warm-up

# podman, on private storage
pod import "$work/busybox.tar" localhost/busybox >/dev/null
pod run --rm --network none localhost/busybox true

# OCI bundle for crun and runc
mkdir -p "$work/bundle/rootfs"
tar -C "$work/bundle/rootfs" -xf "$work/busybox.tar"
(cd "$work/bundle" && runc spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"true"/' config.json)
seq_id=0
# BASHPID: the parallel runs are subshells, which share seq_id and may share $RANDOM.
oci_run() { seq_id=$((seq_id + 1)); "$1" --root "$work/$1-state" run --bundle "$work/bundle" "b$$-$BASHPID-$seq_id" >/dev/null; }

berth_seq=$(time_loop "$N" "$BERTH" run --rm --network none busybox true)
podman_seq=$(time_loop "$N" pod run --rm --network none localhost/busybox true)
crun_seq=$(time_loop "$N" oci_run crun)
runc_seq=$(time_loop "$N" oci_run runc)

# berth, crun and podman in turn, run by run: the machine's timings drift by tens of percent
# over minutes, and the loops above run minutes apart; here the drift hits all three alike.
alt_b=0 alt_c=0 alt_p=0
for ((i = 0; i < N; i++)); do
  t0=${EPOCHREALTIME/./}; "$BERTH" run --rm --network none busybox true >/dev/null 2>&1
  t1=${EPOCHREALTIME/./}; oci_run crun
  t2=${EPOCHREALTIME/./}; pod run --rm --network none localhost/busybox true >/dev/null 2>&1
  t3=${EPOCHREALTIME/./}
  alt_b=$((alt_b + t1 - t0)) alt_c=$((alt_c + t2 - t1)) alt_p=$((alt_p + t3 - t2))
done
ms() { awk -v a="$1" -v n="$N" 'BEGIN { printf "%.2f\n", a / n / 1000 }'; }
berth_alt=$(ms "$alt_b") crun_alt=$(ms "$alt_c") podman_alt=$(ms "$alt_p")

berth_par=$(time_parallel "$P" "$BERTH" run --rm --network none busybox true)
podman_par=$(time_parallel "$P" pod run --rm --network none localhost/busybox true)
crun_par=$(time_parallel "$P" oci_run crun)
runc_par=$(time_parallel "$P" oci_run runc)

# Idle cost of a running container: its supervisor's RSS, PSS (the binary's shared pages split
# fairly) and USS (private memory: what one more container really costs), for berth's shim and
# for podman's conmon, each over 10 idle containers.
mem_of() { # mem_of PID... -> "RSS PSS USS" in MiB, means
  local rss=0 pss=0 uss=0 n=0 pid
  for pid in "$@"; do
    read -r r p u < <(awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} /^Private_(Clean|Dirty):/ {u+=$2} END {print r, p, u}' /proc/$pid/smaps_rollup)
    rss=$((rss + r)); pss=$((pss + p)); uss=$((uss + u)); n=$((n + 1))
  done
  awk -v a="$rss" -v b="$pss" -v c="$uss" -v n="$n" 'BEGIN { if (n == 0) n = 1; printf "%.2f %.2f %.2f\n", a/n/1024, b/n/1024, c/n/1024 }'
}
for i in $(seq 10); do "$BERTH" run -d --network none busybox sleep 3600 >/dev/null; done
for i in $(seq 10); do pod run -d --network none localhost/busybox sleep 3600 >/dev/null; done
sleep 1
n=$(pgrep -f "berth shim --id" | wc -l)
read -r shim_rss shim_pss shim_uss < <(mem_of $(pgrep -f "berth shim --id"))
read -r conmon_rss conmon_pss conmon_uss < <(mem_of $(pgrep -x conmon))
pod rm -f -a -t 0 >/dev/null 2>&1 || true

cat <<EOT
### Container start ($(date -u +%Y-%m-%d), $(nproc) cores, kernel $(uname -r))

| workload | berth | podman | crun | runc | berth/crun | podman/berth |
|---|---|---|---|---|---|---|
| \`run --rm true\`, sequential, ms per run (N=$N) | $berth_seq | $podman_seq | $crun_seq | $runc_seq | $(ratio "$berth_seq" "$crun_seq") | $(ratio "$podman_seq" "$berth_seq") |
| \`run --rm true\`, the three in turn, ms per run (N=$N) | $berth_alt | $podman_alt | $crun_alt | | $(ratio "$berth_alt" "$crun_alt") | $(ratio "$podman_alt" "$berth_alt") |
| \`run --rm true\`, $P concurrent, wall ms | $berth_par | $podman_par | $crun_par | $runc_par | $(ratio "$berth_par" "$crun_par") | $(ratio "$podman_par" "$berth_par") |

Idle supervisor per running container (mean of $n): berth shim RSS $shim_rss MiB, PSS $shim_pss MiB, USS $shim_uss MiB; podman's conmon RSS $conmon_rss MiB, PSS $conmon_pss MiB, USS $conmon_uss MiB.
EOT
