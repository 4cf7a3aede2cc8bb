#!/usr/bin/env bash
# The quick start: start berth's daemon, import a busybox image, and list it with both the berth
# CLI and the real docker CLI. `scripts/demo.sh stop` stops the demo daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
BERTH=${BERTH:-$PWD/bin/berth}
ROOT=${BERTH_DEMO_ROOT:-/var/lib/berth}
EXEC=${BERTH_DEMO_EXEC_ROOT:-/run/berth}
SOCK=$EXEC/berth.sock
LOG=$EXEC/daemon.log
export BERTH_HOST=unix://$SOCK DOCKER_HOST=unix://$SOCK

if [ "${1:-}" = stop ]; then
  if [ -f "$EXEC/demo.pid" ]; then kill "$(cat "$EXEC/demo.pid")" 2>/dev/null || true; rm -f "$EXEC/demo.pid"; fi
  echo "demo daemon stopped"; exit 0
fi

[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (the daemon mounts filesystems)" >&2; exit 1; }
mkdir -p "$EXEC"
if ! "$BERTH" version >/dev/null 2>&1; then
  echo "==> starting berth daemon (root $ROOT, socket $SOCK, log $LOG)"
  setsid "$BERTH" daemon --root "$ROOT" --exec-root "$EXEC" -H "unix://$SOCK" >"$LOG" 2>&1 < /dev/null &
  echo $! > "$EXEC/demo.pid"
  for _ in $(seq 100); do "$BERTH" version >/dev/null 2>&1 && break; sleep 0.1; done
fi
"$BERTH" version

echo "==> importing busybox (from Debian's busybox-static) as busybox:latest"
scripts/busybox-image.sh | "$BERTH" import -c 'CMD ["sh"]' - busybox:latest

echo "==> berth images"
"$BERTH" images
echo "==> docker images (the real docker CLI, talking to berth)"
if command -v docker >/dev/null; then docker images; else echo "(docker CLI not installed)"; fi

echo
echo "The daemon keeps running. Try:"
echo "  export DOCKER_HOST=$DOCKER_HOST"
echo "  docker image inspect busybox; docker history busybox; docker save busybox -o busybox.tar"
echo "Stop it with: make demo-stop"
