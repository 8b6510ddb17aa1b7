#!/usr/bin/env bash
# Runs every Fuzz target of the module briefly, one per command (go test
# -fuzz takes one target at a time). FUZZTIME sets each run's length: an
# execution count like 150000x (default), since a duration like 10s can
# fail a run at its deadline with "context deadline exceeded" and nothing
# found (a go1.26 fuzz coordinator race, golang/go#75804, fixed in go1.27).
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-150000x}
n=0
for pkg in $(go list ./...); do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz $pkg $target ($fuzztime)"
		go test "$pkg" -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime"
		n=$((n + 1))
	done
done
echo "fuzzed $n targets"
