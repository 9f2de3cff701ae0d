package worker

import (
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
)

// TestPrefetchLandmark guards which layers get a prefetch at mount: only
// one with the prefetch landmark, from its offset; the no-prefetch
// landmark, or no landmark, means none.
func TestPrefetchLandmark(t *testing.T) {
	reg := func(name string, off int64) *estargz.TOCEntry {
		return &estargz.TOCEntry{Name: name, Type: "reg", Offset: off}
	}
	for _, tc := range []struct {
		name    string
		entries []*estargz.TOCEntry
		off     int64
		ok      bool
	}{
		{"prefetch landmark", []*estargz.TOCEntry{reg("bin/sh", 100), reg(estargz.PrefetchLandmark, 900), reg("etc/x", 1000)}, 900, true},
		{"no-prefetch landmark", []*estargz.TOCEntry{reg(estargz.NoPrefetchLandmark, 100), reg("etc/x", 200)}, 0, false},
		{"no landmark", []*estargz.TOCEntry{reg("etc/x", 200)}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l landmark
			for _, e := range tc.entries {
				l.see(e)
			}
			if off, ok := l.offset(); off != tc.off || ok != tc.ok {
				t.Errorf("landmark = %d, %v; want %d, %v", off, ok, tc.off, tc.ok)
			}
		})
	}
}

func TestRegistryOf(t *testing.T) {
	for ref, want := range map[string]string{
		"127.0.0.1:5000/lazyfs/test:v1": "127.0.0.1:5000",
		"not a ref":                     "not a ref", // does not parse: its own key
		"docker.io/library/busybox:1":   "docker.io",
	} {
		if got := registryOf(ref); got != want {
			t.Errorf("registryOf(%q) = %q, want %q", ref, got, want)
		}
	}
}
