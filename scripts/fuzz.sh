#!/usr/bin/env bash
# Runs every Fuzz target of the module briefly, one per command (go test
# -fuzz takes one target at a time). FUZZTIME sets each run's length.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
n=0
for pkg in $(go list ./...); do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz $pkg $target ($fuzztime)"
		go test "$pkg" -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime"
		n=$((n + 1))
	done
done
echo "fuzzed $n targets"
