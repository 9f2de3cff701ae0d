package harness

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestContainerdStartsPrivately(t *testing.T) {
	env := RequireTools(t)
	for _, tc := range []struct {
		version     ContainerdVersion
		wantVersion string
	}{
		{V2, "2.3.7"},
		{V1, "1.6."},
	} {
		t.Run(tc.version.String(), func(t *testing.T) {
			ctx := context.Background()
			c, err := StartContainerd(ctx, ContainerdOptions{
				Version:       tc.version,
				Env:           env,
				LazyfsAddress: "/tmp/lazyfs-harness-test/absent.sock",
				LazyfsRoot:    "/tmp/lazyfs-harness-test/root",
			})
			if err != nil {
				t.Fatal(err)
			}
			Track(t, c)
			if len(c.Address()) > 100 || !strings.HasPrefix(c.Address(), c.BaseDir()+"/") {
				t.Errorf("Address() = %s, want a short path under %s", c.Address(), c.BaseDir())
			}
			out, err := c.Ctr(ctx, "version")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "Server:") || !strings.Contains(out, tc.wantVersion) {
				t.Errorf("ctr version:\n%s\nwant server %s", out, tc.wantVersion)
			}
			// The proxy plugin is registered (and dials lazily, so it is ok
			// with no snapshotter listening).
			out, err = c.Ctr(ctx, "plugins", "ls")
			if err != nil {
				t.Fatal(err)
			}
			if !hasLine(out, "io.containerd.snapshotter.v1", "lazyfs", "ok") {
				t.Errorf("ctr plugins ls does not list lazyfs as ok:\n%s", out)
			}
			cl, err := c.Client(ctx)
			if err != nil {
				t.Fatal(err)
			}
			v, err := cl.Version(ctx)
			if err != nil || !strings.Contains(v.Version, tc.wantVersion) {
				t.Errorf("client Version() = %+v, %v", v, err)
			}

			base := c.BaseDir()
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if _, err := os.Stat(base); !os.IsNotExist(err) {
				t.Errorf("base dir %s left after Close: %v", base, err)
			}
			if pids, _ := processesUsing(base); len(pids) != 0 {
				t.Errorf("processes using %s left after Close: %v", base, pids)
			}
		})
	}
}

// hasLine reports whether some line of out has all fields, in order.
func hasLine(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		got := strings.Fields(line)
		i := 0
		for _, f := range got {
			if i < len(fields) && f == fields[i] {
				i++
			}
		}
		if i == len(fields) {
			return true
		}
	}
	return false
}

func TestMergeConfig(t *testing.T) {
	base := map[string]any{
		"root":    "/r",
		"grpc":    map[string]any{"address": "/a", "uid": 0},
		"plugins": map[string]any{"p1": map[string]any{"x": 1}},
	}
	over := map[string]any{
		"grpc":    map[string]any{"address": "/b"},
		"plugins": map[string]any{"p2": map[string]any{"y": 2}},
		"state":   "/s",
	}
	got := mergeConfig(base, over)
	for _, check := range []struct {
		name string
		got  any
		want any
	}{
		{"replaced leaf", got["grpc"].(map[string]any)["address"], "/b"},
		{"kept sibling", got["grpc"].(map[string]any)["uid"], 0},
		{"kept table", got["plugins"].(map[string]any)["p1"].(map[string]any)["x"], 1},
		{"added table", got["plugins"].(map[string]any)["p2"].(map[string]any)["y"], 2},
		{"added leaf", got["state"], "/s"},
		{"untouched leaf", got["root"], "/r"},
	} {
		if check.got != check.want {
			t.Errorf("%s: got %v, want %v", check.name, check.got, check.want)
		}
	}
}

func TestContainerdShimSocketDirFits(t *testing.T) {
	base, err := newBaseDir("c")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(base)
	if dir := filepath.Join(base, "s"); len(dir) > 42 {
		t.Errorf("shim socket_dir %s is %d bytes, containerd accepts 42", dir, len(dir))
	}
}
