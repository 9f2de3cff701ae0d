package ctl

import (
	"os"
	"path/filepath"

	"github.com/lazyfs/lazyfs/containerdconf"
)

// containerdDropIn is the unit drop-in `make install` puts in place, which
// makes every start of containerd wait for lazyfs-snapshotter's READY=1.
const containerdDropIn = "containerd.service.d/lazyfs.conf"

// unitDirs are where systemd reads unit drop-ins, most specific first.
var unitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"}

// checkStartOrder: under systemd, a containerd that starts before the
// snapshotter fails its first lazy pulls with a dial timeout; the drop-in
// orders it after lazyfs. root prefixes every path (tests).
func checkStartOrder(root string) containerdconf.Finding {
	const check = "start order"
	if _, err := os.Stat(filepath.Join(root, "/run/systemd/system")); err != nil {
		return containerdconf.Finding{Severity: containerdconf.Pass, Check: check, Message: "not under systemd: start lazyfs-snapshotter before containerd"}
	}
	for _, d := range unitDirs {
		if _, err := os.Stat(filepath.Join(root, d, containerdDropIn)); err == nil {
			return containerdconf.Finding{Severity: containerdconf.Pass, Check: check, Message: "containerd starts after lazyfs-snapshotter (" + filepath.Join(d, containerdDropIn) + ")"}
		}
	}
	return containerdconf.Finding{Severity: containerdconf.Warn, Check: check, Key: "/etc/systemd/system/" + containerdDropIn,
		Message: "missing: containerd may start before lazyfs-snapshotter and fail its first pulls with a dial timeout; install misc/systemd/" + containerdDropIn + " (make install does) and systemctl daemon-reload"}
}
