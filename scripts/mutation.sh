#!/usr/bin/env bash
# mutation.sh runs gremlins (pinned) package by package on a copy of the tree
# and prints one table: package, killed, lived, not covered, timed out,
# efficacy (killed / (killed + lived)).
#
#   scripts/mutation.sh [package ...]     default: every package listed below
#
# Environment:
#   MUTATION_OUT    the table's file (default bin/mutation.txt); the raw
#                   gremlins reports and the lived mutants go beside it
#   GREMLINS_FLAGS  extra flags for `gremlins unleash` (e.g. --workers 1)
#   MUTATION_GOFLAGS extra go flags for every test run, e.g. -skip=REGEXP to
#                   leave out slow tests (the efficacy is then a lower bound)
#   MUTATION_STATUSES which mutant statuses gremlins prints as it goes
#                   (default lt: lived and timed out; lktcv prints every
#                   tested one, so that a run stopped before its end still
#                   shows its counts: scripts/mutation.sh --log-table LOG)
#
# Why a copy: gremlins rewrites source files in place while it runs, so a run
# on the work tree would race with editors and builds. Why -count=1: a cached
# coverage run makes gremlins time every mutant out against a near-zero
# baseline.
set -euo pipefail

GREMLINS="github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0"
HEADER="$(printf '%-12s %7s %7s %12s %10s %9s %6s' package killed lived "not covered" "timed out" efficacy time)"

# row prints a table row from a gremlins JSON report.
row() {
	jq -r --arg p "$2" --arg s "$3" '
		[.mutants_killed, .mutants_lived, .mutants_not_covered,
		 ([.files[].mutations[] | select(.status == "TIMED OUT")] | length),
		 (if (.mutants_killed + .mutants_lived) > 0
		  then (1000 * .mutants_killed / (.mutants_killed + .mutants_lived) | round / 10 | tostring) + " %"
		  else "-" end)] as $r
		| "\($p)\t\($r[0])\t\($r[1])\t\($r[2])\t\($r[3])\t\($r[4])\t\($s)"' "$1" |
		awk -F'\t' '{printf "%-12s %7s %7s %12s %10s %9s %6s\n", $1, $2, $3, $4, $5, $6, $7}'
}

# --table DIR prints the table of the reports a run left in DIR (e.g. one
# that was stopped before its end).
if [ "${1:-}" = --table ]; then
	echo "$HEADER"
	for f in "$2"/*.json; do
		row "$f" "$(basename "$f" .json)" "$(jq -r '.elapsed_time | round | tostring + "s"' "$f")"
	done
	exit 0
fi
# --log-table LOG counts the statuses a gremlins log printed so far (a run
# with MUTATION_STATUSES=lktcv that was stopped, or is still going).
if [ "${1:-}" = --log-table ]; then
	awk '$1 == "KILLED" {k++} $1 == "LIVED" {l++} $1 == "TIMED" {t++} $1 == "NOT" && $2 == "COVERED" {n++}
		END {printf "killed %d, lived %d, not covered %d, timed out %d, efficacy %s\n", k, l, n, t,
			(k + l) ? sprintf("%.1f %%", 100 * k / (k + l)) : "-"}' "$2"
	exit 0
fi
DEFAULT_PKGS="toc chunks snapshot lazyfs supervisor failover daemonapi remote"

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
[ -d cache ] && DEFAULT_PKGS="$DEFAULT_PKGS cache"
pkgs=("$@")
[ ${#pkgs[@]} -eq 0 ] && read -r -a pkgs <<<"$DEFAULT_PKGS"

out="${MUTATION_OUT:-$root/bin/mutation.txt}"
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
rawdir="${out%.*}.d"
rm -rf "$rawdir"
mkdir -p "$rawdir"

work="$(mktemp -d /tmp/lazyfs-mutation.XXXXXX)"
# The tests' temp dirs (gremlins' and t.TempDir's) go to a short dir of our
# own (socket paths must stay under 108 bytes), so that what a mutant left
# behind there can be found and removed.
tmp="$(mktemp -d /tmp/lzm.XXXXXX)"
cleanup() {
	# A mutant that breaks an unmount leaves a FUSE mount whose server is
	# gone: detach it lazily (never stat it) before removing its dir.
	local dir m
	for dir in "$work" "$tmp"; do
		awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r |
			while read -r m; do umount -l "$m" 2>/dev/null || true; done
	done
	rm -rf "$work" "$tmp"
}
trap cleanup EXIT
tar -C "$root" --exclude ./.git --exclude ./bin --exclude ./zz_warm -cf - . | tar -C "$work" -xf -
# The worker binary that supervisor's tests spawn, built once from the
# unmutated copy (a mutant of the package under test is in the test binary).
mkdir -p "$work/bin"
(cd "$work" && go build -o bin/lazyfsd ./cmd/lazyfsd)

# Build gremlins once (go run would rebuild it per package on a cold cache).
GOBIN="$work/.gremlins-bin" go install "$GREMLINS"
gremlins="$work/.gremlins-bin/gremlins"

export GOFLAGS="-count=1 ${MUTATION_GOFLAGS:-}"
export TMPDIR="$tmp"
start=$(date +%s)
rows=()
for p in "${pkgs[@]}"; do
	p="${p#./}"
	if [ ! -d "$work/$p" ]; then
		echo "mutation: no package $p" >&2
		exit 2
	fi
	echo "== $p" >&2
	t0=$(date +%s)
	# shellcheck disable=SC2086 # GREMLINS_FLAGS is a list of flags
	(cd "$work" && "$gremlins" unleash ${GREMLINS_FLAGS:-} -S "${MUTATION_STATUSES:-lt}" -o "$rawdir/$p.json" "./$p") >"$rawdir/$p.log" 2>&1 || {
		echo "mutation: gremlins failed on $p; see $rawdir/$p.log" >&2
		tail -20 "$rawdir/$p.log" >&2
		rows+=("$(printf '%-12s %7s %7s %12s %10s %9s %6s' "$p" - - - - failed -)")
		continue
	}
	secs=$(($(date +%s) - t0))
	grep -E '^ *(LIVED|TIMED OUT)' "$rawdir/$p.log" >"$rawdir/$p.lived" || true
	rows+=("$(row "$rawdir/$p.json" "$p" "${secs}s")")
done

{
	echo "gremlins v0.6.0, $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(($(date +%s) - start)) s"
	echo "$HEADER"
	printf '%s\n' "${rows[@]}"
} | tee "$out"
echo "mutation: table in $out, lived mutants in $rawdir/*.lived" >&2
