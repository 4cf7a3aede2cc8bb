#!/usr/bin/env bash
# Side-by-side networking benchmark (issue 4): berth's bridge driver against podman's (netavark,
# from Debian). iperf3 runs from the host inside the containers' network namespaces (nsenter),
# so both engines are measured on the same binary and only their datapaths differ:
#   - container -> container on one user network (veth, bridge, nftables forward chain);
#   - host -> published port at 127.0.0.1 and at the host's own address (both engines: DNAT in
#     the output hook; 127.0.0.1 with route_localnet on the bridge and masquerade);
#   - the time networking adds to `run --rm busybox true` (bridge against --network none).
# Everything stays on this host. Prints a Markdown table; usage: bench/network/run.sh [N] [SECS]
# podman keeps global state outside --root (/dev/shm/libpod_lock, /run/libpod, netavark's
# /run/containers/networks): do not run this while another podman benchmark runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/../lib/peers.sh"
N=${1:-30}
SECS=${2:-5}
BERTH=${BERTH:-$top/bin/berth}
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
[ -x "$BERTH" ] || (cd "$top" && make build >/dev/null)

bench_install_peers podman crun iperf3 jq
bench_fix_hugetlb
bench_fix_podman_ulimits

work=$(mktemp -d /tmp/berth-bench-XXXXXX)
exec_root=$(mktemp -d /run/berth-bench-XXXXXX)
sock=$exec_root/berth.sock
daemon_pid=
# netavark leaves its iptables-nft tables behind; remove them afterwards unless they predate us.
nat_before=$(nft list table ip nat >/dev/null 2>&1 && echo y || true)
filter_before=$(nft list table ip filter >/dev/null 2>&1 && echo y || true)
cleanup() {
  set +e
  for p in $(cat "$work"/iperf-*.pid 2>/dev/null); do kill "$p" 2>/dev/null; done
  if [ -n "$daemon_pid" ]; then
    "$BERTH" rm -f $("$BERTH" ps -aq 2>/dev/null) >/dev/null 2>&1
    "$BERTH" network rm benchnet >/dev/null 2>&1
    kill "$daemon_pid" 2>/dev/null; wait "$daemon_pid" 2>/dev/null
  fi
  ip link del bbench0 2>/dev/null
  for l in $(ip -o link | awk -F': ' '{print $2}' | grep '^bbn-'); do ip link del "$l" 2>/dev/null; done
  nft delete table ip berth-bench 2>/dev/null
  pod rm -af -t 0 >/dev/null 2>&1
  pod network rm -f benchnet >/dev/null 2>&1
  pod system reset -f >/dev/null 2>&1
  umount -R "$work"/podman/overlay/*/merged "$work"/podman/overlay 2>/dev/null
  [ -n "$nat_before" ] || nft delete table ip nat 2>/dev/null
  [ -n "$filter_before" ] || nft delete table ip filter 2>/dev/null
  umount -l "$exec_root" 2>/dev/null  # the daemon mounts a tmpfs there when /run is on disk
  rm -rf "$work" "$exec_root"
  for d in /sys/fs/cgroup/*/berth-bench /sys/fs/cgroup/berth-bench; do rmdir "$d" 2>/dev/null; done
}
trap cleanup EXIT

"$top/scripts/busybox-image.sh" "$work/busybox.tar"
host_ip=$(ip -4 -o addr show scope global | awk '{split($4, a, "/"); print a[1]; exit}')

setsid "$BERTH" daemon --root "$work/berth" --exec-root "$exec_root" -H "unix://$sock" --cgroup-parent /berth-bench \
  --bridge bbench0 --bridge-prefix bbn- --nftables-table berth-bench >"$work/daemon.log" 2>&1 &
daemon_pid=$!
export BERTH_HOST=unix://$sock
for _ in $(seq 100); do "$BERTH" version >/dev/null 2>&1 && break; sleep 0.1; done
"$BERTH" import - busybox < "$work/busybox.tar" >/dev/null
pod import "$work/busybox.tar" localhost/busybox >/dev/null

# gbps JSON: iperf3's received throughput in Gbit/s.
gbps() { jq -r '.end.sum_received.bits_per_second / 1e9 * 100 | round / 100'; }

# iperf_server NAME NETNS PORT: a one-off iperf3 server inside NETNS.
iperf_server() {
  nsenter --net="$2" iperf3 -s -1 -p "$3" >/dev/null 2>&1 &
  echo $! > "$work/iperf-$1.pid"
  for _ in $(seq 50); do nsenter --net="$2" sh -c "cat /proc/net/tcp | grep -qi ':$(printf %04X "$3") 00000000:0000 0A'" && return; sleep 0.1; done
}

# measure CLI IMAGE: measures one engine; prints "c2c host_lo host_ip run_bridge run_none".
measure() {
  local cli=$1 image=$2
  $cli network create benchnet >/dev/null
  $cli run -d --name srv --network benchnet "$image" sleep 600 >/dev/null
  $cli run -d --name cli --network benchnet "$image" sleep 600 >/dev/null
  $cli run -d --name pub -p 15201:5201 "$image" sleep 600 >/dev/null
  key() { $cli inspect -f '{{.NetworkSettings.SandboxKey}}' "$1"; }
  local srv_ip
  srv_ip=$($cli inspect -f '{{(index .NetworkSettings.Networks "benchnet").IPAddress}}' srv)
  iperf_server srv "$(key srv)" 5201
  c2c=$(nsenter --net="$(key cli)" iperf3 -c "$srv_ip" -p 5201 -t "$SECS" -J | gbps)
  iperf_server pub "$(key pub)" 5201
  lo=$(iperf3 -c 127.0.0.1 -p 15201 -t "$SECS" -J | gbps)
  iperf_server pub "$(key pub)" 5201
  hip=$(iperf3 -c "$host_ip" -p 15201 -t "$SECS" -J | gbps)
  $cli rm -f srv cli pub >/dev/null
  $cli network rm benchnet >/dev/null
  $cli run --rm "$image" true >/dev/null; $cli run --rm --network none "$image" true >/dev/null
  rb=$(time_loop "$N" $cli run --rm "$image" true)
  rn=$(time_loop "$N" $cli run --rm --network none "$image" true)
  echo "$c2c $lo $hip $rb $rn"
}

read -r b_c2c b_lo b_hip b_rb b_rn < <(measure "$BERTH" busybox)
read -r p_c2c p_lo p_hip p_rb p_rn < <(measure pod localhost/busybox)

echo "| measure | berth | podman $(podman --version | awk '{print $3}') (netavark) |"
echo "|---|---|---|"
echo "| iperf3 container -> container, same network (Gbit/s) | $b_c2c | $p_c2c |"
echo "| iperf3 host -> published port at 127.0.0.1 (Gbit/s) | $b_lo | $p_lo |"
echo "| iperf3 host -> published port at host address (Gbit/s) | $b_hip | $p_hip |"
echo "| run --rm busybox true, bridge (ms, mean of $N) | $b_rb | $p_rb |"
echo "| run --rm --network none busybox true (ms, mean of $N) | $b_rn | $p_rn |"
echo "| time networking adds to run (ms) | $(awk -v a="$b_rb" -v b="$b_rn" 'BEGIN{printf "%.2f", a-b}') | $(awk -v a="$p_rb" -v b="$p_rn" 'BEGIN{printf "%.2f", a-b}') |"
