#!/usr/bin/env bash
# Side-by-side build benchmark (issue 5): a 10-step Dockerfile on busybox (ENV, WORKDIR, two
# COPYs, two RUNs, ARG, LABEL, CMD), built
#   cold: berth build --no-cache        vs  buildah bud --layers --no-cache
#   warm: berth build (all steps cached) vs  buildah bud --layers (all steps cached)
# Both use private roots; RUN steps run without network (buildah --network none; berth's RUN
# containers use the daemon's default network mode). Prints a Markdown table.
# usage: bench/build/run.sh [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/../lib/peers.sh"
N=${1:-5}
BERTH=${BERTH:-$top/bin/berth}
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
[ -x "$BERTH" ] || (cd "$top" && make build >/dev/null)

bench_install_peers buildah crun
bench_fix_hugetlb

work=$(mktemp -d /tmp/berth-bench-XXXXXX)
exec_root=$(mktemp -d /run/berth-bench-XXXXXX)
sock=$exec_root/berth.sock
daemon_pid=
bah() { buildah --root "$work/buildah" --runroot "$work/buildah-run" --storage-driver overlay "$@"; }
cleanup() {
  set +e
  if [ -n "$daemon_pid" ]; then
    kill "$daemon_pid" 2>/dev/null; wait "$daemon_pid" 2>/dev/null
  fi
  bah rm -a >/dev/null 2>&1
  bah rmi -af >/dev/null 2>&1
  umount -R "$work"/buildah/overlay/*/merged 2>/dev/null
  umount "$work"/buildah/overlay 2>/dev/null
  umount -l "$exec_root" 2>/dev/null  # the daemon mounts a tmpfs there when /run is on disk
  rm -rf "$work" "$exec_root"
  for d in /sys/fs/cgroup/*/berth-bench /sys/fs/cgroup/berth-bench; do rmdir "$d" 2>/dev/null; done
}
trap cleanup EXIT

"$top/scripts/busybox-image.sh" "$work/busybox.tar"
ctx=$work/ctx
mkdir -p "$ctx/dir"
head -c 1048576 /dev/urandom > "$ctx/a.bin"
for i in $(seq 50); do head -c 4096 /dev/urandom > "$ctx/dir/f$i"; done
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox
ENV APP=/app
WORKDIR /app
COPY a.bin ./
COPY dir/ ./dir/
RUN echo built > built.txt && ls dir | wc -l > count.txt
ARG V=1
RUN echo "$V" > v.txt
LABEL bench=build
CMD ["cat", "built.txt"]
DF

setsid "$BERTH" daemon --root "$work/berth" --exec-root "$exec_root" -H "unix://$sock" --cgroup-parent /berth-bench >"$work/daemon.log" 2>&1 &
daemon_pid=$!
export BERTH_HOST=unix://$sock
for _ in $(seq 100); do "$BERTH" version >/dev/null 2>&1 && break; sleep 0.1; done
"$BERTH" import -c 'CMD ["sh"]' - busybox < "$work/busybox.tar" >/dev/null

c=$(bah from scratch)
bah add "$c" "$work/busybox.tar" / >/dev/null
bah config --cmd sh "$c"
bah commit -q "$c" localhost/busybox >/dev/null
bah rm "$c" >/dev/null
export BUILDAH_RUNTIME=${BUILDAH_RUNTIME:-$(command -v crun)}

timed() {
  local t0 t1
  t0=$(now_ns)
  "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; exit 1; }
  t1=$(now_ns)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", (b - a) / 1e6 }'
}
mean() { awk '{ s += $1 } END { printf "%.1f", s / NR }'; }
bbud() { bah bud --layers --network none --isolation oci -t "$1" "${@:2}" "$ctx"; }

bc=(); bw=(); pc=(); pw=()
for r in $(seq "$N"); do
  bc+=("$(timed "$BERTH" build --no-cache -t "b:$r" "$ctx")")
  bw+=("$(timed "$BERTH" build -t "b:$r" "$ctx")")
  pc+=("$(timed bbud "p:$r" --no-cache)")
  pw+=("$(timed bbud "p:$r")")
done
[ "$("$BERTH" run --rm --network none b:1)" = built ] || { echo "berth image is wrong" >&2; exit 1; }
b1=$(printf '%s\n' "${bc[@]}" | mean); b2=$(printf '%s\n' "${bw[@]}" | mean)
p1=$(printf '%s\n' "${pc[@]}" | mean); p2=$(printf '%s\n' "${pw[@]}" | mean)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }
cat <<EOT
### Build ($(date -u +%Y-%m-%d), $(nproc) cores, kernel $(uname -r), mean of $N)

| workload | berth | buildah $(buildah --version | awk '{print $3}') | buildah/berth |
|---|---|---|---|
| cold: 10 steps, no cache, ms | $b1 | $p1 | $(ratio "$b1" "$p1") |
| warm: 10 steps, all cached, ms | $b2 | $p2 | $(ratio "$b2" "$p2") |
EOT
