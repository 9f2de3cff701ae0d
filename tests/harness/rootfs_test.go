package harness

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
)

// TestRootfsAndContainers pulls the test image into a private containerd
// with the overlayfs snapshotter, mounts its rootfs, runs containers from
// it, and checks that Close leaves no task, process or cgroup behind.
func TestRootfsAndContainers(t *testing.T) {
	env := RequireTools(t)
	busybox, err := env.Busybox()
	Require(t, err)
	ctx := context.Background()

	reg, err := StartRegistry(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	Track(t, reg)
	layout := t.TempDir()
	if _, err := WriteOCILayout(layout, "v1", TestImageLayers(busybox)); err != nil {
		t.Fatal(err)
	}
	ref := reg.Addr() + "/harness/test:v1"
	if err := Push(ctx, layout, "v1", ref); err != nil {
		t.Fatal(err)
	}

	// A namespace of its own makes the cgroups `ctr run` creates ours.
	ns := "lazyfs-harness-" + randomSuffix()
	c, err := StartContainerd(ctx, ContainerdOptions{Env: env, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	Track(t, c)
	if _, err := c.Ctr(ctx, "image", "pull", "--plain-http", ref); err != nil {
		t.Fatal(err)
	}
	cl, err := c.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("MountImageRootfs", func(t *testing.T) {
		countViews := func() int {
			n := 0
			err := cl.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, info snapshots.Info) error {
				if info.Kind == snapshots.KindView {
					n++
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		dir := t.TempDir()
		cleanup, err := MountImageRootfs(ctx, cl, ref, "overlayfs", dir)
		if err != nil {
			t.Fatal(err)
		}
		if n := countViews(); n != 1 {
			t.Errorf("%d views while mounted, want 1", n)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "etc", "hostname")); err != nil || string(b) != "lazyfs-test\n" {
			t.Errorf("/etc/hostname = %q, %v", b, err)
		}
		if _, err := os.Lstat(filepath.Join(dir, TestImageDeleted)); !os.IsNotExist(err) {
			t.Errorf("whited-out %s: %v, want absent", TestImageDeleted, err)
		}
		if err := cleanup(); err != nil {
			t.Fatal(err)
		}
		if mps, _ := mountsUnder(dir); len(mps) != 0 {
			t.Errorf("still mounted after cleanup: %v", mps)
		}
		if n := countViews(); n != 0 {
			t.Errorf("%d views after cleanup, want 0", n)
		}
		if err := cleanup(); err != nil {
			t.Errorf("second cleanup: %v", err)
		}
	})

	t.Run("CtrRun", func(t *testing.T) {
		out, err := c.CtrRun(ctx, "--rm", ref, "harness-run", "sh", "-c", "sha256sum -c "+TestImageChecksumsPath+" >/dev/null && cat /etc/hostname")
		if err != nil {
			t.Fatal(err)
		}
		if out != "lazyfs-test\n" {
			t.Errorf("ctr run printed %q, want the image's hostname", out)
		}
	})

	t.Run("CloseKillsTasksAndRemovesCgroups", func(t *testing.T) {
		if _, err := c.CtrRun(ctx, "--detach", ref, "harness-sleep", "sleep", "600"); err != nil {
			t.Fatal(err)
		}
		out, err := c.Ctr(ctx, "task", "ls")
		if err != nil {
			t.Fatal(err)
		}
		var pid int
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "harness-sleep" {
				pid, _ = strconv.Atoi(f[1])
			}
		}
		if pid == 0 || !alive(pid) {
			t.Fatalf("no running harness-sleep task in:\n%s", out)
		}
		created, _ := filepath.Glob("/sys/fs/cgroup/*/" + ns)
		if len(created) == 0 {
			t.Logf("ctr run created no cgroup dir named %s", ns)
		}
		base := c.BaseDir()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if alive(pid) {
			t.Errorf("container process %d survived Close", pid)
		}
		if left, _ := filepath.Glob("/sys/fs/cgroup/*/" + ns); len(left) != 0 {
			t.Errorf("cgroups left after Close: %v", left)
		}
		if _, err := os.Stat(base); !os.IsNotExist(err) {
			t.Errorf("base dir %s left after Close: %v", base, err)
		}
	})
}
