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
  if [ -f "$EXEC/demo.pid" ]; then
    # Containers keep running without the daemon; the demo removes the ones it made.
    ids=$("$BERTH" ps -aq 2>/dev/null || true)
    [ -z "$ids" ] || "$BERTH" rm -f $ids >/dev/null 2>&1 || true
    kill "$(cat "$EXEC/demo.pid")" 2>/dev/null || true
    rm -f "$EXEC/demo.pid"
  fi
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

if ! "$BERTH" image inspect busybox:latest >/dev/null 2>&1; then
  echo "==> importing busybox (from Debian's busybox-static) as busybox:latest"
  scripts/busybox-image.sh | "$BERTH" import -c 'CMD ["sh"]' - busybox:latest
fi

echo "==> berth images"
"$BERTH" images
echo "==> docker images (the real docker CLI, talking to berth)"
if command -v docker >/dev/null; then docker images; else echo "(docker CLI not installed)"; fi

echo "==> berth run --rm busybox (a container on berth's own runtime)"
"$BERTH" run --rm busybox sh -c 'echo "hello from $(hostname), pid $$, as $(id -un)"'
echo "==> docker run --rm busybox (the real docker CLI, same daemon)"
if command -v docker >/dev/null; then docker run --rm busybox uname -a; fi

echo
echo "The daemon keeps running. Try:"
echo "  export DOCKER_HOST=$DOCKER_HOST"
echo "  docker run -it --rm busybox sh"
echo "  docker run -d --name web busybox sh -c 'while true; do date; sleep 1; done'; docker logs -f web"
echo "  docker image inspect busybox; docker history busybox; docker save busybox -o busybox.tar"
echo "Stop it with: make demo-stop"
