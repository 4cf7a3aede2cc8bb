#!/usr/bin/env bash
# Runs every side-by-side benchmark and prints their Markdown tables (see docs/benchmarks.md).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for b in containers images sched; do
  if [ -x "$here/$b/run.sh" ]; then
    echo "## $b"
    bash "$here/$b/run.sh"
    echo
  fi
done
