package ctl

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lazyfs/lazyfs/containerdconf"
)

// TestCheckContainerdAddress guards doctor's check of lazyfs's [containerd]
// table: a socket that is missing fails, an empty address or another
// containerd's socket warns, a name containerd does not use fails, and the
// same socket (also through a link, as the tests' stacks use) passes.
func TestCheckContainerdAddress(t *testing.T) {
	dir := t.TempDir()
	listen := func(name string) string {
		p := filepath.Join(dir, name)
		l, err := net.Listen("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return p
	}
	ctrd, other := listen("containerd.sock"), listen("other.sock")
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(ctrd, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		addr, snap string
		want       containerdconf.Severity
		wantKey    string
	}{
		{"same socket", ctrd, "lazyfs", containerdconf.Pass, ""},
		{"same socket through a link", link, "lazyfs", containerdconf.Pass, ""},
		{"missing socket", filepath.Join(dir, "nothing.sock"), "lazyfs", containerdconf.Fail, "[containerd] address"},
		{"empty", "", "lazyfs", containerdconf.Warn, "[containerd] address"},
		{"another containerd", other, "lazyfs", containerdconf.Warn, "[containerd] address"},
		{"another name", ctrd, "stargz", containerdconf.Fail, "[containerd] snapshotter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := checkContainerdAddress(tc.addr, tc.snap, "unix://"+ctrd, "lazyfs")
			if len(fs) != 1 {
				t.Fatalf("findings %+v, want one", fs)
			}
			if f := fs[0]; f.Severity != tc.want || !strings.HasPrefix(f.Key, tc.wantKey) {
				t.Errorf("finding %v %q: %s; want %v naming %q", f.Severity, f.Key, f.Message, tc.want, tc.wantKey)
			}
		})
	}
}
