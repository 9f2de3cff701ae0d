#!/usr/bin/env bash
# Prints what `make test` must not let scroll by: the suites that were
# skipped (only possible with LAZYFS_ALLOW_SKIP=1) and the kernel facts the
# tests checked. Reads the file the tests append to through LAZYFS_SKIP_LOG
# (package internal/testreq): lines of "kind<TAB>suite<TAB>text".
set -euo pipefail
log=${1:?usage: test-summary.sh SKIP_LOG}

facts=$( [ -f "$log" ] && awk -F'\t' '$1 == "fact" { print $3 }' "$log" | sort -u | paste -sd ';' | sed 's/;/; /g' || true)
[ -n "$facts" ] && echo "test-summary: checked $facts"

n=0
[ -f "$log" ] && n=$(awk -F'\t' '$1 == "skip"' "$log" | sort -u | wc -l)
if [ "$n" -eq 0 ]; then
	echo "test-summary: no suite skipped"
	exit 0
fi
list=$(awk -F'\t' '$1 == "skip" { print $2 " (" $3 ")" }' "$log" | sort -u | paste -sd ';' | sed 's/;/; /g')
bar=$(printf '!%.0s' {1..78})
echo "$bar"
echo "$n suites skipped (LAZYFS_ALLOW_SKIP=1): $list"
echo "$bar"
