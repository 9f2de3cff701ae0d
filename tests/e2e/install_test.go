package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lazyfs/lazyfs/containerdconf"
	"github.com/lazyfs/lazyfs/internal/testreq"
)

// TestMakeInstallStaged runs `make install` into a DESTDIR with another
// PREFIX, as a package build would: every file lands under DESTDIR, the
// unit starts the installed binary, an existing config is kept, and the
// staged containerd drop-in passes doctor's configuration checks.
func TestMakeInstallStaged(t *testing.T) {
	if err := env.CheckBinaries("snapshotterctl"); err != nil {
		testreq.Require(t, err)
	}
	dest := t.TempDir()
	keep := filepath.Join(dest, "etc", "lazyfs", "config.toml")
	if err := os.MkdirAll(filepath.Dir(keep), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keep, []byte("# mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// -o build: install the binaries the suite runs, without rebuilding
	// them under other tests' running processes.
	stdout, stderr, code := runCmd(t, "make", "-s", "-C", env.RepoRoot, "-o", "build", "install", "DESTDIR="+dest, "PREFIX=/usr")
	t.Logf("make install:\n%s%s", stdout, stderr)
	if code != 0 {
		t.Fatalf("make install: exit %d", code)
	}
	for _, f := range []string{"usr/bin/lazyfs-snapshotter", "usr/bin/lazyfsd", "usr/bin/snapshotterctl",
		"etc/systemd/system/lazyfs-snapshotter.service", "etc/systemd/system/containerd.service.d/lazyfs.conf",
		"etc/containerd/conf.d/lazyfs.toml"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	unit, err := os.ReadFile(filepath.Join(dest, "etc/systemd/system/lazyfs-snapshotter.service"))
	if err != nil || !strings.Contains(string(unit), "\nExecStart=/usr/bin/lazyfs-snapshotter\n") {
		t.Errorf("unit does not start /usr/bin/lazyfs-snapshotter (%v):\n%s", err, unit)
	}
	if b, _ := os.ReadFile(keep); string(b) != "# mine\n" {
		t.Errorf("an existing config was replaced: %q", b)
	}
	dropIn, err := os.ReadFile(filepath.Join(dest, "etc/containerd/conf.d/lazyfs.toml"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := containerdconf.ParseLoaded(dropIn)
	if err != nil {
		t.Fatal(err)
	}
	p := containerdconf.Params{Name: "lazyfs", Address: "/run/lazyfs/snapshotter.sock", Root: "/var/lib/lazyfs",
		Platform: "linux/amd64", HostsDir: "/etc/containerd/certs.d"}
	if fs := containerdconf.Check(containerdconf.Version{Major: 2, Minor: 3, Patch: 7}, l, p); containerdconf.Failed(fs) {
		t.Errorf("the staged drop-in fails doctor's checks: %+v", fs)
	}
}
