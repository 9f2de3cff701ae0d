package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lazyfs/lazyfs/internal/testreq"
	"github.com/lazyfs/lazyfs/tests/harness"
)

// crictlPath is where scripts/install-deps.sh builds crictl.
func crictlPath(t *testing.T) string {
	t.Helper()
	p := filepath.Join(filepath.Dir(env.ContainerdV2Dir), "crictl-1.37.0", "crictl")
	if _, err := os.Stat(p); err != nil {
		testreq.Require(t, fmt.Errorf("crictl (make deps builds it): %w", err))
	}
	return p
}

// node is a Kubernetes-like node: lazyfs, and a containerd with CRI that
// snapshotterctl configured.
type node struct {
	*stack   // its containerd converts images; startCRI starts the node's
	hostsDir string
}

// runCmd runs a command bounded by a minute and returns its stdout,
// stderr and exit code (-1 when it could not run).
func runCmd(t *testing.T, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	case err != nil:
		t.Fatalf("%s %q: %v", name, args, err)
	}
	return stdout.String(), stderr.String(), 0
}

// criConfig is what a Kubernetes node's containerd has before lazyfs:
// CRI on, a sandbox image, a hosts dir; restrict_oom_score_adj as this VM
// needs (E2E-NOTES.md).
func criConfig(v harness.ContainerdVersion, sandbox, hostsDir string) map[string]any {
	if v == harness.V1 {
		return map[string]any{
			"disabled_plugins": []string{},
			"plugins": map[string]any{
				"io.containerd.grpc.v1.cri": map[string]any{
					"sandbox_image":          sandbox,
					"restrict_oom_score_adj": true,
					"registry":               map[string]any{"config_path": hostsDir},
				},
			},
		}
	}
	return map[string]any{
		"disabled_plugins": []string{},
		"plugins": map[string]any{
			"io.containerd.cri.v1.images": map[string]any{
				"pinned_images": map[string]any{"sandbox": sandbox},
				"registry":      map[string]any{"config_path": hostsDir},
			},
			"io.containerd.cri.v1.runtime": map[string]any{"restrict_oom_score_adj": true},
		},
	}
}

// startNode starts the stack (registry, lazyfs, a containerd used to
// convert images) and pushes a sandbox image; the CRI containerd is
// started by startCRI.
func startNode(t *testing.T) *node {
	t.Helper()
	hostsDir := t.TempDir()
	s := startStackWith(t, harness.V2, harness.SnapshotterOptions{Env: env,
		Config: map[string]any{"registry": map[string]any{"config_path": hostsDir}}})
	host := s.reg.Addr()
	hosts := fmt.Sprintf("server = \"http://%s\"\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", host, host)
	if err := os.MkdirAll(filepath.Join(hostsDir, host), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostsDir, host, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	return &node{stack: s, hostsDir: hostsDir}
}

func (n *node) sandboxRef() string { return n.reg.Addr() + "/lazyfs/pause:v1" }

// pushSandbox pushes a "pause" image: the test image's base layer with a
// command that keeps running.
func (n *node) pushSandbox(t *testing.T) {
	t.Helper()
	busybox, err := env.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	layout := t.TempDir()
	if _, err := harness.WriteOCILayoutWithCmd(layout, "v1", harness.TestImageLayers(busybox)[:1],
		[]string{"/bin/sh", "-c", "exec sleep 2147483647"}); err != nil {
		t.Fatal(err)
	}
	if err := harness.Push(context.Background(), layout, "v1", n.sandboxRef()); err != nil {
		t.Fatal(err)
	}
}

// ctl runs bin/snapshotterctl with the lazyfs config and containerd
// flags of this node.
func (n *node) ctl(t *testing.T, c *harness.Containerd, args ...string) (string, string, int) {
	t.Helper()
	full := append([]string{}, args...)
	full = append(full, "--config", n.snap.ConfigPath(), "--run-dir", n.snap.RunDir())
	if args[0] == "doctor" {
		full = append(full, "--address", c.Address(), "--containerd-bin", c.Binary(), "--containerd-config", c.ConfigPath())
	}
	return runCmd(t, env.Bin("snapshotterctl"), full...)
}

// startCRI starts a containerd with CRI whose config `snapshotterctl
// config containerd --write` completed (then mutate, if set, changes it:
// the misconfiguration cases).
func (n *node) startCRI(t *testing.T, v harness.ContainerdVersion, mutate func(t *testing.T, configPath, confDir string)) *harness.Containerd {
	t.Helper()
	if err := env.CheckBinaries("snapshotterctl"); err != nil {
		testreq.Require(t, err)
	}
	ctl := func(configPath string) error {
		confDir := filepath.Join(filepath.Dir(configPath), "conf.d")
		args := []string{"config", "containerd", "--write", "--config", n.snap.ConfigPath(),
			"--containerd-config", configPath, "--conf-dir", confDir}
		bin := env.ContainerdV2Dir
		if v == harness.V1 {
			bin = env.ContainerdV1Dir
		}
		args = append(args, "--containerd-bin", filepath.Join(bin, "containerd"))
		stdout, stderr, code := runCmd(t, env.Bin("snapshotterctl"), args...)
		t.Logf("snapshotterctl config containerd --write:\n%s%s", stdout, stderr)
		if code != 0 {
			return fmt.Errorf("snapshotterctl config containerd --write: exit %d: %s", code, stderr)
		}
		if mutate != nil {
			mutate(t, configPath, confDir)
		}
		return nil
	}
	c, err := harness.StartContainerd(context.Background(), harness.ContainerdOptions{
		Version: v, Env: env, Namespace: "k8s.io",
		Config:      criConfig(v, n.sandboxRef(), n.hostsDir),
		BeforeStart: ctl,
	})
	if err != nil {
		t.Fatal(err)
	}
	harness.Track(t, c)
	return c
}

// TestNodeSetup follows the README on a Kubernetes node, on both
// containerd lines: snapshotterctl config containerd --write, containerd
// started with it, snapshotterctl doctor green, and a pod whose image is
// pulled lazily through CRI starts and reads its files.
func TestNodeSetup(t *testing.T) {
	for _, v := range []harness.ContainerdVersion{harness.V2, harness.V1} {
		t.Run(strings.ReplaceAll(v.String(), " ", "-"), func(t *testing.T) {
			crictl := crictlPath(t)
			n := startNode(t)
			n.pushSandbox(t)
			img := n.convertToEStargz(t, n.reg.Addr())
			c := n.startCRI(t, v, nil)

			stdout, stderr, code := n.ctl(t, c, "doctor")
			t.Logf("snapshotterctl doctor:\n%s%s", stdout, stderr)
			if code != 0 || strings.Contains(stdout, "FAIL") {
				t.Fatalf("doctor exit %d on a node snapshotterctl configured", code)
			}

			cri := func(args ...string) string {
				t.Helper()
				full := append([]string{"--runtime-endpoint", "unix://" + c.Address(), "--image-endpoint", "unix://" + c.Address(), "--timeout", "60s"}, args...)
				out, errOut, code := runCmd(t, crictl, full...)
				if code != 0 {
					t.Fatalf("crictl %q: exit %d: %s%s", args, code, out, errOut)
				}
				return out
			}
			cri("pull", img.ref)
			mounts, errOut, code := n.ctl(t, c, "mounts", "list")
			if code != 0 {
				t.Fatalf("snapshotterctl mounts list: exit %d: %s", code, errOut)
			}
			if got := strings.Count(mounts, "sha256:"); got < len(img.layers) {
				t.Fatalf("after crictl pull, lazyfs serves %d layers, want %d:\n%s", got, len(img.layers), mounts)
			}

			// The image file system CRI reports exists.
			var fsInfo struct {
				ImageFilesystems []struct {
					FsID struct {
						Mountpoint string `json:"mountpoint"`
					} `json:"fsId"`
				} `json:"imageFilesystems"`
			}
			if err := json.Unmarshal([]byte(cri("imagefsinfo", "-o", "json")), &fsInfo); err != nil {
				t.Fatal(err)
			}
			for _, f := range fsInfo.ImageFilesystems {
				if _, err := os.Stat(f.FsID.Mountpoint); err != nil {
					t.Errorf("crictl imagefsinfo reports %s: %v", f.FsID.Mountpoint, err)
				}
			}

			dir := t.TempDir()
			pod := filepath.Join(dir, "pod.json")
			ctr := filepath.Join(dir, "ctr.json")
			writeJSONFile(t, pod, map[string]any{
				"metadata":      map[string]any{"name": "lazy", "namespace": "default", "uid": "lazy-uid"},
				"log_directory": dir,
				"linux":         map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}},
			})
			writeJSONFile(t, ctr, map[string]any{
				"metadata": map[string]any{"name": "reader"},
				"image":    map[string]any{"image": img.ref},
				"command":  []string{"/bin/sh", "-c", "cat " + harness.TestImageChecksumsPath + " > /dev/null && echo started && exec sleep 2147483647"},
				"log_path": "reader.log",
			})
			podID := strings.TrimSpace(cri("runp", pod))
			t.Cleanup(func() { runCmd(t, crictl, "--runtime-endpoint", "unix://"+c.Address(), "rmp", "-f", podID) })
			ctrID := strings.TrimSpace(cri("create", podID, ctr, pod))
			cri("start", ctrID)
			deadline := time.Now().Add(time.Minute)
			for {
				b, _ := os.ReadFile(filepath.Join(dir, "reader.log"))
				if strings.Contains(string(b), "started") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the container on the lazy image did not start within a minute; log: %q; %s", b, cri("ps", "-a"))
				}
				time.Sleep(50 * time.Millisecond)
			}
			// Usage of the lazily mounted layers is what the node's disk
			// holds for them (the chunk cache, written in the background):
			// after the container read its files it is not 0.
			cl, err := c.Client(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			usageDeadline := time.Now().Add(30 * time.Second)
			for {
				var used int64
				for _, id := range img.chainIDs {
					u, err := cl.SnapshotService("lazyfs").Usage(context.Background(), id)
					if err != nil {
						t.Fatalf("usage of %s: %v", id, err)
					}
					used += u.Size
				}
				if used > 0 {
					t.Logf("lazily mounted layers use %d bytes on disk after the container's reads", used)
					break
				}
				if time.Now().After(usageDeadline) {
					t.Fatal("Usage of the lazily mounted layers stayed 0 after the container read them")
				}
				time.Sleep(100 * time.Millisecond)
			}
			cri("rmp", "-f", podID)
			cri("rmi", img.ref)
			// rmi leaves nothing of the image in lazyfs (its snapshots are
			// removed, so their mounts are), and a second pull is lazy again.
			n.waitLazyLayers(t, c, 0)
			cri("pull", img.ref)
			n.waitLazyLayers(t, c, len(img.layers))
			cri("rmi", img.ref)
			n.waitLazyLayers(t, c, 0)
		})
	}
}

// waitLazyLayers polls snapshotterctl mounts list until lazyfs serves want
// layers, for at most 30 s (containerd removes snapshots after an image
// in the background of its garbage collection).
func (n *node) waitLazyLayers(t *testing.T, c *harness.Containerd, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, errOut, code := n.ctl(t, c, "mounts", "list")
		if code != 0 {
			t.Fatalf("snapshotterctl mounts list: exit %d: %s", code, errOut)
		}
		got := strings.Count(out, "sha256:")
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lazyfs serves %d layers, want %d:\n%s", got, want, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func writeJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// editFile applies re → repl to the file at path.
func editFile(t *testing.T, path, re, repl string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := regexp.MustCompile(re).ReplaceAll(b, []byte(repl))
	if bytes.Equal(out, b) {
		t.Fatalf("%s: nothing matches %q:\n%s", path, re, b)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDoctorNamesMissingKey starts containerd with each misconfiguration
// of issue 13 (on the line it hurts) and checks that doctor fails, naming
// the key to change.
func TestDoctorNamesMissingKey(t *testing.T) {
	dropIn := func(confDir string) string { return filepath.Join(confDir, "lazyfs.toml") }
	cases := []struct {
		name    string
		version harness.ContainerdVersion
		mutate  func(t *testing.T, configPath, confDir string)
		keys    []string
	}{
		{"2.x snapshotter = lazyfs alone", harness.V2, func(t *testing.T, _, confDir string) {
			editFile(t, dropIn(confDir), `(?s)\[\[plugins\."io\.containerd\.transfer.*`, "")
			editFile(t, dropIn(confDir), `(?m)^\s*enable_remote_snapshot_annotations.*$`, "")
		}, []string{`[[plugins."io.containerd.transfer.v1.local".unpack_config]]`, `[proxy_plugins.lazyfs.exports] enable_remote_snapshot_annotations`}},
		{"2.x without enable_remote_snapshot_annotations", harness.V2, func(t *testing.T, _, confDir string) {
			editFile(t, dropIn(confDir), `(?m)^\s*enable_remote_snapshot_annotations.*$`, "")
		}, []string{`[proxy_plugins.lazyfs.exports] enable_remote_snapshot_annotations`}},
		{"2.x drop-in not imported", harness.V2, func(t *testing.T, configPath, _ string) {
			editFile(t, configPath, `(?m)^imports = .*$`, "")
		}, []string{`[proxy_plugins.lazyfs]`}},
		{"2.x CRI snapshotter not lazyfs", harness.V2, func(t *testing.T, _, confDir string) {
			editFile(t, dropIn(confDir), `(?m)^\[plugins\."io\.containerd\.cri\.v1\.images"\]\n\s*snapshotter = "lazyfs"`, "")
		}, []string{`[plugins."io.containerd.cri.v1.images"] snapshotter`}},
		{"2.x transfer service hosts dir differs", harness.V2, func(t *testing.T, _, confDir string) {
			// Another drop-in, as a node's other tooling would add.
			other := "version = 3\n[plugins.\"io.containerd.transfer.v1.local\"]\n  config_path = \"/nonexistent/certs.d\"\n"
			if err := os.WriteFile(filepath.Join(confDir, "zz-registry.toml"), []byte(other), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{`[plugins."io.containerd.transfer.v1.local"] config_path`}},
		{"1.6 without disable_snapshot_annotations = false", harness.V1, func(t *testing.T, configPath, _ string) {
			editFile(t, configPath, `(?m)^\s*disable_snapshot_annotations\s*=.*$`, "")
		}, []string{`[plugins."io.containerd.grpc.v1.cri".containerd] disable_snapshot_annotations`}},
		{"1.6 CRI snapshotter not lazyfs", harness.V1, func(t *testing.T, configPath, _ string) {
			editFile(t, configPath, `(?m)^\s*snapshotter\s*=.*lazyfs.*$`, "")
		}, []string{`[plugins."io.containerd.grpc.v1.cri".containerd] snapshotter`}},
		{"1.6 image file system path missing", harness.V1, func(t *testing.T, configPath, _ string) {
			link := filepath.Join(filepath.Dir(configPath), "root", "io.containerd.snapshotter.v1.lazyfs")
			if err := os.Remove(link); err != nil {
				t.Fatal(err)
			}
		}, []string{"io.containerd.snapshotter.v1.lazyfs"}},
	}
	n := startNode(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := n.startCRI(t, tc.version, tc.mutate)
			stdout, stderr, code := n.ctl(t, c, "doctor")
			t.Logf("snapshotterctl doctor:\n%s%s", stdout, stderr)
			if code != 1 {
				t.Errorf("doctor exit status %d, want 1", code)
			}
			for _, key := range tc.keys {
				found := false
				for _, line := range strings.Split(stdout, "\n") {
					if strings.HasPrefix(line, "FAIL") && strings.Contains(line, key) {
						found = true
					}
				}
				if !found {
					t.Errorf("no FAIL line names %s", key)
				}
			}
			if err := c.Close(); err != nil {
				t.Errorf("stop containerd: %v", err)
			}
		})
	}
}
