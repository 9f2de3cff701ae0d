package ctl

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/lazyfs/lazyfs/containerdconf"
)

// TestCheckStartOrder: under systemd the containerd drop-in must exist in
// one of the unit dirs (a warning naming it otherwise); without systemd
// there is nothing to check.
func TestCheckStartOrder(t *testing.T) {
	root := t.TempDir()
	if f := checkStartOrder(root); f.Severity != containerdconf.Pass {
		t.Errorf("without systemd: %+v", f)
	}
	if err := os.MkdirAll(filepath.Join(root, "run/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
	if f := checkStartOrder(root); f.Severity != containerdconf.Warn || f.Key != "/etc/systemd/system/"+containerdDropIn {
		t.Errorf("under systemd without the drop-in: %+v", f)
	}
	dropIn := filepath.Join(root, "lib/systemd/system", containerdDropIn)
	if err := os.MkdirAll(filepath.Dir(dropIn), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dropIn, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if f := checkStartOrder(root); f.Severity != containerdconf.Pass {
		t.Errorf("under systemd with the drop-in in /lib: %+v", f)
	}
}
