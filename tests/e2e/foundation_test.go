package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/snapshotters"
	"github.com/moby/sys/mountinfo"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// snapshotStopTimeout is how long the snapshotter may take to exit on
// SIGTERM while containerd uses it.
const snapshotStopTimeout = 20 * time.Second

// TestFoundation pulls, runs and compares the standard test image through
// lazyfs with containerd 2.3.7, then stops the snapshotter under a running
// container and restarts it.
func TestFoundation(t *testing.T) {
	s := startStack(t, harness.V2)
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"PullWithLazyfs", func(t *testing.T) { s.pull(t, "lazyfs") }},
		{"RunVerifiesEveryFile", func(t *testing.T) { s.runChecks(t, "fnd-check") }},
		{"SameRootfsAsOverlayfs", func(t *testing.T) {
			s.pull(t, "overlayfs")
			s.compareWithOverlayfs(t)
		}},
		{"SnapshotLabels", s.checkSnapshotLabels},
		{"SIGTERMWhileInUse", s.checkStopAndRestart},
	}
	for _, step := range steps {
		// Each step builds on the previous one.
		if !t.Run(step.name, step.run) {
			return
		}
	}
}

// TestCompatibilityContainerd16 runs the same pull, run and comparison with
// Debian's containerd 1.6 (config version 2, shims under /run/containerd/s).
func TestCompatibilityContainerd16(t *testing.T) {
	s := startStack(t, harness.V1)
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"PullWithLazyfs", func(t *testing.T) { s.pull(t, "lazyfs") }},
		{"RunVerifiesEveryFile", func(t *testing.T) { s.runChecks(t, "compat-check") }},
		{"SameRootfsAsOverlayfs", func(t *testing.T) {
			s.pull(t, "overlayfs")
			s.compareWithOverlayfs(t)
		}},
		{"SnapshotLabels", s.checkSnapshotLabels},
	}
	for _, step := range steps {
		if !t.Run(step.name, step.run) {
			return
		}
	}
}

// checkSnapshotLabels asserts that the committed top snapshot of the image
// carries containerd.io/snapshot.ref = its chain ID (containerd finds a
// remote snapshot after ErrAlreadyExists by walking with a filter on that
// label, so a snapshot without it could never be reused) and the image
// reference containerd passes as a remote-snapshot label.
func (s *stack) checkSnapshotLabels(t *testing.T) {
	chainID := s.chainID(t)
	out, err := s.ctrd.Ctr(context.Background(), "snapshots", "--snapshotter", "lazyfs", "info", chainID)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Kind   string
		Name   string
		Labels map[string]string
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("ctr snapshots info: %v\n%s", err, out)
	}
	t.Logf("labels of %s: %v", chainID, info.Labels)
	if info.Name != chainID || !strings.EqualFold(info.Kind, "committed") {
		t.Errorf("snapshot %s: name %q kind %q, want the committed chain ID", chainID, info.Name, info.Kind)
	}
	for label, want := range map[string]string{
		"containerd.io/snapshot.ref": chainID,
		// The remote-snapshot labels reached the snapshotter: without them
		// (ctr on 1.6, or 2.x without unpack_config) no layer can be lazy.
		snapshotters.TargetRefLabel: s.ref,
	} {
		if got := info.Labels[label]; got != want {
			t.Errorf("label %s = %q, want %q; labels: %v", label, got, want, info.Labels)
		}
	}
}

// checkStopAndRestart sends SIGTERM to the snapshotter while a container
// runs from a lazyfs snapshot: it must exit 0 in time, leave no mount under
// its dirs (the container's rootfs overlay is containerd's, under
// containerd's state dir), and after a restart list the same snapshots and
// run new containers.
func (s *stack) checkStopAndRestart(t *testing.T) {
	ctx := context.Background()
	if _, err := s.ctrd.CtrRun(ctx, "--snapshotter", "lazyfs", "--detach", s.ref, "fnd-sleep", "sleep", "600"); err != nil {
		t.Fatal(err)
	}
	before := s.snapshotLines(t)
	if !slices.ContainsFunc(before, func(l string) bool { return strings.HasPrefix(l, "fnd-sleep ") }) {
		t.Fatalf("the container's snapshot is not listed:\n%s", strings.Join(before, "\n"))
	}

	stopStart := time.Now()
	code, inTime := s.snap.Stop()
	t.Logf("snapshotter exited %d after SIGTERM in %v", code, time.Since(stopStart).Round(time.Millisecond))
	if code != 0 || !inTime {
		t.Errorf("snapshotter on SIGTERM: exit code %d, exited within %v: %v; want 0, true", code, snapshotStopTimeout, inTime)
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(s.snap.BaseDir()))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		t.Errorf("mount left under the snapshotter's dir after it exited: %s (%s)", m.Mountpoint, m.FSType)
	}
	if out, err := s.ctrd.Ctr(ctx, "task", "ls"); err != nil || !hasFields(out, "fnd-sleep", "RUNNING") {
		t.Errorf("the container does not run on after the snapshotter stopped: %v\n%s", err, out)
	}

	if err := s.snap.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if after := s.snapshotLines(t); !slices.Equal(before, after) {
		t.Errorf("snapshots after restart:\n%s\nbefore:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
	out, err := s.ctrd.CtrRun(ctx, "--snapshotter", "lazyfs", "--rm", s.ref, "fnd-after-restart", "cat", "/etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	if out != "lazyfs-test\n" {
		t.Errorf("container after restart printed %q, want the image's /etc/hostname", out)
	}

	// Removing the container removes its snapshot through the restarted
	// snapshotter.
	if _, err := s.ctrd.Ctr(ctx, "task", "kill", "--signal", "SIGKILL", "fnd-sleep"); err != nil {
		t.Fatal(err)
	}
	waitTaskStopped(t, s, "fnd-sleep")
	for _, args := range [][]string{{"task", "delete", "fnd-sleep"}, {"container", "delete", "fnd-sleep"}} {
		if _, err := s.ctrd.Ctr(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	if lines := s.snapshotLines(t); slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "fnd-sleep ") }) {
		t.Errorf("the container's snapshot is still listed after its removal:\n%s", strings.Join(lines, "\n"))
	}
}

func waitTaskStopped(t *testing.T, s *stack, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := s.ctrd.Ctr(context.Background(), "task", "ls")
		if err != nil {
			t.Fatal(err)
		}
		if hasFields(out, id, "STOPPED") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s did not stop within 30s:\n%s", id, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hasFields reports whether a line of a ctr table starts with id and has
// field among the rest.
func hasFields(out, id, field string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[0] == id && slices.Contains(f[1:], field) {
			return true
		}
	}
	return false
}
