#!/usr/bin/env bash
# Installs what the end-to-end tests and the demo need on a Debian 12 machine:
# the Debian packages (registry, runc, containerd 1.6 for the compatibility
# check, skopeo, FUSE tools, ...) and a containerd 2.3.7 build, which Debian
# does not package. Idempotent: when everything is there it only checks and
# returns in well under a second.
#
# What it changes on the host, and only when something is missing:
#   - apt-get update, then apt-get install --no-install-recommends of the
#     missing packages only (nothing already installed is upgraded);
#   - no service of those packages is started: a temporary
#     /usr/sbin/policy-rc.d that forbids starts is in place during the
#     install (an existing one is put back afterwards), and the units the
#     newly installed packages enable at boot (containerd, docker-registry)
#     are disabled again. The tests start their own instances in temp dirs.
#   - containerd 2.3.7 is built with `go install` into $LAZYFS_TOOLS.
# It needs the Debian mirror of /etc/apt/sources.list* and the Go module proxy.
#
# Environment:
#   LAZYFS_TOOLS  where built tools are cached (default /var/cache/lazyfs-tools);
#                 containerd goes to $LAZYFS_TOOLS/containerd-2.3.7/.
set -euo pipefail

CONTAINERD_VERSION=v2.3.7
TOOLS=${LAZYFS_TOOLS:-/var/cache/lazyfs-tools}
CONTAINERD_DIR=$TOOLS/containerd-${CONTAINERD_VERSION#v}
STAMP=$CONTAINERD_DIR/VERSION
# mmdebstrap builds the Debian base of the benchmark images (make bench-e2e).
PACKAGES=(containerd runc docker-registry skopeo fuse3 umoci busybox-static jq strace mmdebstrap)
CONTAINERD_BINARIES=(containerd containerd-shim-runc-v2 ctr)
# The systemd units of PACKAGES that Debian enables and starts on install.
declare -A PACKAGE_UNITS=([containerd]=containerd.service [docker-registry]=docker-registry.service)
POLICY=/usr/sbin/policy-rc.d
POLICY_SAVED=$POLICY.lazyfs-saved

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
		note_enabled_units
		return
	fi
	say "installing missing Debian packages: ${missing[*]} (no recommends, no service started)"
	as_root apt-get update
	forbid_service_starts
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
	allow_service_starts
	for p in "${missing[@]}"; do
		if [ -n "${PACKAGE_UNITS[$p]:-}" ]; then
			disable_unit "${PACKAGE_UNITS[$p]}"
		fi
	done
}

# forbid_service_starts puts a policy-rc.d in place that answers 101
# ("action forbidden") to every start a package's maintainer script asks
# for; allow_service_starts (also run on exit) removes it and puts back one
# that was there before.
forbid_service_starts() {
	if [ -e "$POLICY" ] && [ ! -e "$POLICY_SAVED" ]; then
		as_root mv "$POLICY" "$POLICY_SAVED"
	fi
	printf '#!/bin/sh\n# Put here by lazyfs scripts/install-deps.sh while it installs packages.\nexit 101\n' |
		as_root tee "$POLICY" >/dev/null
	as_root chmod 0755 "$POLICY"
	POLICY_PLACED=1
}

allow_service_starts() {
	[ "${POLICY_PLACED:-0}" = 1 ] || return 0
	as_root rm -f "$POLICY"
	if [ -e "$POLICY_SAVED" ]; then
		as_root mv "$POLICY_SAVED" "$POLICY"
	fi
	POLICY_PLACED=0
}

# disable_unit undoes what a package's install did for unit: enabled at
# boot (the symlinks in /etc/systemd/system/*.wants, which is all that
# "enabled" is, with or without systemd running) and, where systemd runs,
# started despite policy-rc.d.
disable_unit() {
	local unit=$1
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		# Also records the choice, so that a package upgrade keeps it disabled.
		as_root deb-systemd-helper disable "$unit" >/dev/null 2>&1 || true
	fi
	as_root find /etc/systemd/system -path '*.wants/*' -name "$unit" -type l -delete
	if [ -d /run/systemd/system ]; then
		as_root systemctl stop "$unit" >/dev/null 2>&1 || true
		as_root systemctl daemon-reload >/dev/null 2>&1 || true
	fi
	say "disabled $unit (installed as a dependency; the tests start their own)"
}

# note_enabled_units points at units of PACKAGES that are enabled at boot
# on this host. They were enabled before this script ran (by an operator or
# an older version of it), so they are left as they are.
note_enabled_units() {
	local unit
	for unit in "${PACKAGE_UNITS[@]}"; do
		if compgen -G "/etc/systemd/system/*.wants/$unit" >/dev/null; then
			say "note: $unit is enabled at boot on this host; not changed (to disable: deb-systemd-helper disable $unit, or remove /etc/systemd/system/*.wants/$unit)"
		fi
	done
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
	BUILD_TMP=$tmp
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
	BUILD_TMP=
	say "built: $("$CONTAINERD_DIR/containerd" --version)"
}

# cleanup runs however the script ends: an interrupted install must not
# leave starts forbidden on the host, nor a half-built tools directory.
cleanup() {
	allow_service_starts
	if [ -n "${BUILD_TMP:-}" ]; then
		as_root rm -rf "$BUILD_TMP"
	fi
}
trap cleanup EXIT

# crictl drives containerd's CRI in the node tests (Kubernetes' own client;
# not packaged for Debian 12), built like containerd into $CRICTL_DIR.
CRICTL_VERSION=v1.37.0
CRICTL_DIR=$TOOLS/crictl-${CRICTL_VERSION#v}

build_crictl() {
	if [ -x "$CRICTL_DIR/crictl" ]; then
		say "crictl $CRICTL_VERSION present in $CRICTL_DIR"
		return
	fi
	command -v go >/dev/null 2>&1 || die "go is not installed (needed to build crictl $CRICTL_VERSION)"
	say "building crictl $CRICTL_VERSION into $CRICTL_DIR"
	as_root mkdir -p "$TOOLS"
	local tmp
	tmp=$(as_root mktemp -d "$TOOLS/.crictl-build.XXXXXX")
	BUILD_TMP=$tmp
	(cd / && as_root env GOFLAGS= GOBIN="$tmp" PATH="$PATH" HOME="$HOME" go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION")
	as_root chmod 0755 "$tmp"
	as_root rm -rf "$CRICTL_DIR"
	as_root mv "$tmp" "$CRICTL_DIR"
	BUILD_TMP=
	say "built: $("$CRICTL_DIR/crictl" --version)"
}

install_packages
build_containerd
build_crictl
[ -e /dev/fuse ] || say "warning: /dev/fuse is missing (modprobe fuse); lazy mounts will not work"
say "done"
