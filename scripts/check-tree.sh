#!/usr/bin/env bash
# Fails when the repository tracks a build output: an ELF file (a binary or
# a test binary) or any file over 1 MiB. Sources, fixtures and docs of this
# project are far below that; test images are built at run time.
set -euo pipefail
cd "$(dirname "$0")/.."

limit=$((1024 * 1024))
bad=0
while IFS= read -r -d '' f; do
	# A file deleted in the work tree but still in the index is checked at
	# its next commit, when it is either back or gone.
	[ -f "$f" ] || continue
	if [ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')" = "7f454c46" ]; then
		echo "check-tree: $f is an ELF binary: build outputs belong in bin/ (ignored), not in git" >&2
		bad=1
	fi
	size=$(stat -c %s "$f")
	if [ "$size" -gt "$limit" ]; then
		echo "check-tree: $f is $size bytes, over the 1 MiB limit for tracked files" >&2
		bad=1
	fi
done < <(git ls-files -z)
if [ "$bad" -ne 0 ]; then
	exit 1
fi
echo "check-tree: no tracked binary, no tracked file over 1 MiB"
