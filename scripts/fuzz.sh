#!/usr/bin/env bash
# Runs every Fuzz target of the module briefly, one per command (go test
# -fuzz takes one target at a time). FUZZTIME sets each run's length: an
# execution count like 100000x (default), since a duration like 10s can
# fail a run at its deadline with "context deadline exceeded" and nothing
# found (a go1.26 fuzz coordinator race, golang/go#75804, fixed in go1.27).
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-100000x}
n=0
# Targets are found in the test files' text rather than by go test -list,
# which would build every package's test binary once more only to list.
while read -r pkg dir; do
	for f in "$dir"/*_test.go; do
		[ -e "$f" ] || continue
		for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$f"); do
			echo "fuzz $pkg $target ($fuzztime)"
			go test "$pkg" -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime"
			n=$((n + 1))
		done
	done
done < <(go list -f '{{.ImportPath}} {{.Dir}}' ./...)
echo "fuzzed $n targets"
