#!/usr/bin/env bash
# Installs what the end-to-end tests and the demo need on a Debian 12 machine:
# the Debian packages (registry, runc, containerd 1.6 for the compatibility
# check, skopeo, FUSE tools, ...) and a containerd 2.3.7 build, which Debian
# does not package. Idempotent: when everything is there it only checks and
# returns in well under a second.
#
# Environment:
#   LAZYFS_TOOLS  where built tools are cached (default /var/cache/lazyfs-tools);
#                 containerd goes to $LAZYFS_TOOLS/containerd-2.3.7/.
set -euo pipefail

CONTAINERD_VERSION=v2.3.7
TOOLS=${LAZYFS_TOOLS:-/var/cache/lazyfs-tools}
CONTAINERD_DIR=$TOOLS/containerd-${CONTAINERD_VERSION#v}
STAMP=$CONTAINERD_DIR/VERSION
PACKAGES=(containerd runc docker-registry skopeo fuse3 umoci busybox-static jq strace)
CONTAINERD_BINARIES=(containerd containerd-shim-runc-v2 ctr)

say() { echo "install-deps: $*"; }
die() { echo "install-deps: error: $*" >&2; exit 1; }

# Root is needed for apt-get and for the default cache dir; sudo is used when
# present so that a developer account can run the script as well.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root to run: $*"
	fi
}

install_packages() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		# dpkg-query is the cheap check; apt-get is only run when needed so that
		# a machine that has everything never touches the network.
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$p")
		fi
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		say "Debian packages present: ${PACKAGES[*]}"
		return
	fi
	say "installing missing Debian packages: ${missing[*]}"
	as_root apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${PACKAGES[@]}"
}

containerd_present() {
	local b
	[ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$CONTAINERD_VERSION" ] || return 1
	for b in "${CONTAINERD_BINARIES[@]}"; do
		[ -x "$CONTAINERD_DIR/$b" ] || return 1
	done
}

build_containerd() {
	if containerd_present; then
		say "containerd $CONTAINERD_VERSION present in $CONTAINERD_DIR"
		return
	fi
	command -v go >/dev/null 2>&1 || die "go is not installed (needed to build containerd $CONTAINERD_VERSION)"
	say "building containerd $CONTAINERD_VERSION into $CONTAINERD_DIR (about a minute when the Go caches are cold)"
	as_root mkdir -p "$TOOLS"
	local tmp pkgs=() b
	# Build into a fresh directory and rename it into place, so an interrupted
	# build never leaves a half-filled directory that looks complete.
	tmp=$(as_root mktemp -d "$TOOLS/.containerd-build.XXXXXX")
	trap 'as_root rm -rf "$tmp"' EXIT
	for b in "${CONTAINERD_BINARIES[@]}"; do
		pkgs+=("github.com/containerd/containerd/v2/cmd/$b@$CONTAINERD_VERSION")
	done
	# GOFLAGS is cleared because a -mod=... from the caller's environment makes
	# "go install pkg@version" fail; the build runs outside any module.
	(cd / && as_root env GOFLAGS= GOBIN="$tmp" PATH="$PATH" HOME="$HOME" go install "${pkgs[@]}")
	echo "$CONTAINERD_VERSION" | as_root tee "$tmp/VERSION" >/dev/null
	as_root chmod 0755 "$tmp"
	as_root rm -rf "$CONTAINERD_DIR"
	as_root mv "$tmp" "$CONTAINERD_DIR"
	trap - EXIT
	say "built: $("$CONTAINERD_DIR/containerd" --version)"
}

install_packages
build_containerd
[ -e /dev/fuse ] || say "warning: /dev/fuse is missing (modprobe fuse); lazy mounts will not work"
say "done"
