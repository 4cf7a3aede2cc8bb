#!/usr/bin/env bash
# Runs every side-by-side benchmark (each bench/*/run.sh) and prints their Markdown tables;
# docs/benchmarks.md records the figures. The OCI validation suite is separate:
# bench/oci-validation/run.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for dir in "$here"/*/; do
  name=$(basename "$dir")
  case "$name" in lib|oci-validation) continue ;; esac
  [ -x "$dir/run.sh" ] || continue
  echo "## $name"
  bash "$dir/run.sh"
  echo
done
