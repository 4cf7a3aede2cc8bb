#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a short time each ($1, default 10s).
# `go test` alone only replays the seed corpus; this explores further.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10s}
grep -rl --include='*_test.go' '^func Fuzz' internal | while read -r f; do
  pkg=./$(dirname "$f")
  for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | awk '{print $2}'); do
    echo "==> $pkg $fn ($dur)"
    go test -run '^$' -fuzz "^$fn\$" -fuzztime "$dur" "$pkg"
  done
done
