#!/usr/bin/env bash
# Shared setup for side-by-side benchmarks: installs the peers from Debian and applies the
# host quirks they need (see DEVELOPERS.md). Idempotent; source it from a bench script.

bench_install_peers() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing peers: ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

# crun 1.8 refuses this hybrid cgroup layout until hugetlb is bound to a v1 hierarchy.
bench_fix_hugetlb() {
  if [ ! -f /sys/fs/cgroup/cgroup.controllers ] && ! mountpoint -q /sys/fs/cgroup/hugetlb; then
    mkdir -p /sys/fs/cgroup/hugetlb
    mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb 2>/dev/null || true
  fi
}

# podman's default ulimits exceed this host's hard limits (no CAP_SYS_RESOURCE), and under
# conmon crun cannot even set RLIMIT_NPROC to the host's own hard limit (measured: 30000 works,
# 50000 does not), so podman gets limits comfortably inside both.
bench_fix_podman_ulimits() {
  local conf=/etc/containers/containers.conf
  local nofile
  nofile=$(ulimit -Hn)
  local line="default_ulimits = [\"nofile=${nofile}:${nofile}\", \"nproc=30000:30000\"]"
  mkdir -p /etc/containers
  touch "$conf"
  if grep -q '^default_ulimits' "$conf"; then
    sed -i "s|^default_ulimits.*|${line}|" "$conf"
  elif grep -q '^\[containers\]' "$conf"; then
    sed -i "/^\[containers\]/a ${line}" "$conf"
  else
    printf '[containers]\n%s\n' "$line" >> "$conf"
  fi
}

# now_ns prints a monotonic-enough wall clock in nanoseconds.
now_ns() { date +%s%N; }

# time_loop N CMD... runs CMD N times sequentially and prints the mean milliseconds per run.
time_loop() {
  local n=$1; shift
  local t0 t1
  t0=$(now_ns)
  for ((i = 0; i < n; i++)); do "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; return 1; }; done
  t1=$(now_ns)
  awk -v a="$t0" -v b="$t1" -v n="$n" 'BEGIN { printf "%.2f\n", (b - a) / n / 1e6 }'
}

# time_parallel N CMD... starts N copies of CMD at once and prints the wall milliseconds until
# all finished.
time_parallel() {
  local n=$1; shift
  local t0 t1 pids=() fail=0
  t0=$(now_ns)
  for ((i = 0; i < n; i++)); do "$@" >/dev/null 2>&1 & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || fail=1; done
  t1=$(now_ns)
  [ "$fail" -eq 0 ] || { echo "FAILED (parallel): $*" >&2; return 1; }
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", (b - a) / 1e6 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# The helpers below read the calling script's $work (scratch dir), $exec_root, $BERTH and
# $daemon_pid.

# start_berth starts a daemon on a fresh root under $work, listening on $exec_root/b.sock.
start_berth() {
  rm -rf "$work/berth"
  setsid "$BERTH" daemon --root "$work/berth" --exec-root "$exec_root" -H "unix://$exec_root/b.sock" >"$work/daemon.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 100); do BERTH_HOST=unix://$exec_root/b.sock "$BERTH" version >/dev/null 2>&1 && return; sleep 0.05; done
}
stop_berth() { kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true; daemon_pid=; }

# pod runs podman on private storage under $work; reset_pod empties it.
pod() { podman --root "$work/podman" --runroot "$work/podman-run" --cgroup-manager cgroupfs --events-backend none "$@"; }
reset_pod() { pod system reset -f >/dev/null 2>&1 || true; umount -R "$work/podman/overlay" 2>/dev/null || true; rm -rf "$work/podman" "$work/podman-run"; }

# ms CMD... runs CMD once and prints its wall milliseconds; best prints the smallest of its input.
ms() { local t0 t1; t0=$(now_ns); "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; return 1; }; t1=$(now_ns); awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) / 1e6 }'; }
best() { sort -n | head -1; }
