package config_test

import (
	"os"
	"reflect"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/lazyfs/lazyfs/config"
)

// TestContainerdSnippets keeps misc/systemd's containerd snippets in step
// with the defaults: containerd must dial the socket the snapshotter listens
// on by default and export the root it uses. (That containerd accepts the
// files was checked with `containerd config dump` of 1.6.20 and 2.3.7.)
func TestContainerdSnippets(t *testing.T) {
	def := config.Default()
	proxy := map[string]any{
		"type":    "snapshot",
		"address": def.Address,
		"exports": map[string]any{
			"root":                               def.Root,
			"enable_remote_snapshot_annotations": "true",
		},
	}
	// 1.x's CRI needs disable_snapshot_annotations = false; 2.x's keeps its
	// default and pulls through the transfer service (one mechanism).
	criV1 := map[string]any{"snapshotter": "lazyfs", "disable_snapshot_annotations": false}
	criV2 := map[string]any{"snapshotter": "lazyfs"}
	for _, tc := range []struct {
		file    string
		version int64
		// path of the CRI table that holds the snapshotter setting.
		criPath []string
		cri     map[string]any
		unpack  []any
	}{
		{
			file:    "../misc/systemd/containerd-config-v2.toml",
			version: 2,
			criPath: []string{"plugins", "io.containerd.grpc.v1.cri", "containerd"},
			cri:     criV1,
		},
		{
			file:    "../misc/systemd/containerd-config-v3.toml",
			version: 3,
			criPath: []string{"plugins", "io.containerd.cri.v1.images"},
			cri:     criV2,
			unpack: []any{
				map[string]any{"platform": "linux/amd64", "snapshotter": "overlayfs"},
				map[string]any{"platform": "linux/amd64", "snapshotter": "lazyfs"},
			},
		},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := toml.Unmarshal(data, &doc); err != nil {
				t.Fatalf("%s is not TOML: %v", tc.file, err)
			}
			if got := doc["version"]; got != tc.version {
				t.Errorf("version = %v, want %d", got, tc.version)
			}
			if got := lookup(doc, "proxy_plugins", "lazyfs"); !reflect.DeepEqual(got, proxy) {
				t.Errorf("proxy_plugins.lazyfs = %v, want %v", got, proxy)
			}
			if got := lookup(doc, tc.criPath...); !reflect.DeepEqual(got, tc.cri) {
				t.Errorf("%v = %v, want %v", tc.criPath, got, tc.cri)
			}
			unpack := lookup(doc, "plugins", "io.containerd.transfer.v1.local", "unpack_config")
			if tc.unpack == nil && unpack != nil || tc.unpack != nil && !reflect.DeepEqual(unpack, tc.unpack) {
				t.Errorf("unpack_config = %v, want %v", unpack, tc.unpack)
			}
		})
	}
}

// lookup returns the value at a path of table names, or nil.
func lookup(doc map[string]any, path ...string) any {
	var v any = doc
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}
