package ctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lazyfs/lazyfs/containerdconf"
)

// TestAddImport: a config without imports gets one after its version line
// (comments kept); one whose imports cover the drop-in is left alone; one
// whose imports miss it is refused, naming the pattern to add.
func TestAddImport(t *testing.T) {
	const dropIn = "/etc/containerd/conf.d/lazyfs.toml"
	const pattern = "/etc/containerd/conf.d/*.toml"
	got, err := addImport([]byte("# mine\nversion = 2\nroot = \"/r\"\n"), pattern, dropIn)
	if err != nil || string(got) != "# mine\nversion = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\nroot = \"/r\"\n" {
		t.Errorf("no imports: %q, %v", got, err)
	}
	covered := "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n"
	if got, err := addImport([]byte(covered), pattern, dropIn); err != nil || string(got) != covered {
		t.Errorf("covered: %q, %v", got, err)
	}
	if _, err := addImport([]byte("version = 3\nimports = [\"/other/*.toml\"]\n"), pattern, dropIn); err == nil || !strings.Contains(err.Error(), pattern) {
		t.Errorf("not covered: err = %v, want one naming %s", err, pattern)
	}
	if _, err := addImport([]byte("version = [\n"), pattern, dropIn); err == nil {
		t.Error("invalid TOML accepted")
	}
}

// TestFileChangeBackup: a changed file is backed up before it is
// replaced, an identical one is not touched, and a symlink is made only
// where nothing is.
func TestFileChangeBackup(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 16, 0, 0, 0, time.UTC)
	if _, err := (fileChange{path: path, data: []byte("new")}).apply(now); err != nil {
		t.Fatal(err)
	}
	backup := path + ".lazyfs-backup-20261207T160000Z"
	if b, err := os.ReadFile(backup); err != nil || string(b) != "old" {
		t.Errorf("backup = %q, %v", b, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Errorf("file = %q", b)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want the old file's 0600", st.Mode().Perm())
	}
	os.Remove(backup)
	if msg, err := (fileChange{path: path, data: []byte("new")}).apply(now.Add(time.Hour)); err != nil || !strings.Contains(msg, "up to date") {
		t.Errorf("identical: %q, %v", msg, err)
	}
	if _, err := os.Stat(path + ".lazyfs-backup-20261207T170000Z"); err == nil {
		t.Error("identical file backed up")
	}
	link := filepath.Join(dir, "root", "io.containerd.snapshotter.v1.lazyfs")
	if _, err := (fileChange{path: link, link: dir}).apply(now); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(link); err != nil || target != dir {
		t.Errorf("link -> %q, %v", target, err)
	}
	if msg, err := (fileChange{path: path, link: dir}).apply(now); err != nil || !strings.Contains(msg, "left as it is") {
		t.Errorf("existing path: %q, %v", msg, err)
	}
}

// TestPlanV2: a node without a containerd config gets the drop-in alone
// when containerd's default imports read it, and a config importing it
// otherwise; an existing config without imports gets the line.
func TestPlanV2(t *testing.T) {
	v := containerdconf.Version{Major: 2, Minor: 3, Patch: 7}
	p := containerdconf.Params{Name: "lazyfs", Address: "/run/lazyfs/snapshotter.sock", Root: "/var/lib/lazyfs", Platform: "linux/amd64", ConfigVersion: 3}
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.toml")
	plan, err := planV2(v, p, missing, containerdconf.DefaultConfDir)
	if err != nil || len(plan) != 1 || plan[0].path != filepath.Join(containerdconf.DefaultConfDir, "lazyfs.toml") {
		t.Fatalf("default conf dir, no config: %+v, %v", plan, err)
	}
	plan, err = planV2(v, p, missing, filepath.Join(dir, "conf.d"))
	if err != nil || len(plan) != 2 || plan[1].path != missing || !strings.Contains(string(plan[1].data), filepath.Join(dir, "conf.d", "*.toml")) {
		t.Fatalf("own conf dir, no config: %+v, %v", plan, err)
	}
	existing := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(existing, []byte("version = 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	plan, err = planV2(v, p, existing, containerdconf.DefaultConfDir)
	if err != nil || len(plan) != 2 || !strings.Contains(string(plan[1].data), "imports = ") {
		t.Fatalf("config without imports: %+v, %v", plan, err)
	}
}
