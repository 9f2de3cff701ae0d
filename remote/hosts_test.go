package remote

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeHostsToml writes hosts.toml for host in containerd's layout below
// dir ("host:port" becomes "host_port_").
func writeHostsToml(t *testing.T, dir, host, content string) {
	t.Helper()
	name := host
	if i := strings.LastIndex(host, ":"); i > 0 {
		name = host[:i] + "_" + host[i+1:] + "_"
	}
	d := filepath.Join(dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
