# Shared by bench/containers/ab.sh and ab-parallel.sh: a daemon per binary with its own roots,
# cgroup parent, nft table and bridge, the busybox image imported, and everything removed on
# exit. Source it, then call ab_start BIN NAME (sets SOCK).
here_lib=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ab_img=$(mktemp /tmp/berth-ab-img-XXXXXX.tar)
"$here_lib/../../scripts/busybox-image.sh" "$ab_img" >/dev/null
ab_tag=ab$$
ab_pids=() ab_dirs=()
ab_cleanup() {
	set +e
	for p in "${ab_pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	for d in "${ab_dirs[@]}"; do umount -l "$d" 2>/dev/null; done # exec roots: a tmpfs when /run is on disk
	rm -rf "${ab_dirs[@]}" "$ab_img"
	for d in /sys/fs/cgroup/*/"$ab_tag"? /sys/fs/cgroup/"$ab_tag"?; do rmdir "$d" 2>/dev/null; done
}
trap ab_cleanup EXIT
ab_start() { # BIN NAME -> sets SOCK
	local w e
	w=$(mktemp -d /tmp/berth-ab-XXXXXX) e=$(mktemp -d /run/berth-ab-XXXXXX)
	ab_dirs+=("$w" "$e")
	setsid "$1" daemon --root "$w/root" --exec-root "$e" -H "unix://$e/s.sock" --cgroup-parent "$ab_tag$2" \
		--nftables-table "berth-$ab_tag$2" --bridge "br$ab_tag$2" --bridge-prefix "$ab_tag$2-" >"$w/daemon.log" 2>&1 &
	ab_pids+=($!)
	for _ in $(seq 100); do BERTH_HOST=unix://$e/s.sock "$1" version >/dev/null 2>&1 && break; sleep 0.1; done
	BERTH_HOST=unix://$e/s.sock "$1" import - busybox <"$ab_img" >/dev/null
	BERTH_HOST=unix://$e/s.sock "$1" run --rm --network none busybox true
	SOCK=unix://$e/s.sock
}
