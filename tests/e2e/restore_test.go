package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// workerStartDelay is how long the wrapped worker binary of
// TestContainerDuringRestore waits before it starts lazyfsd: longer than a
// `ctr run` takes on this machine, so that the container is set up while the
// layers are still being mounted again.
const workerStartDelay = 10 * time.Second

// slowWorkerBinary writes a wrapper that sleeps delay, then execs the real
// lazyfsd (same pid, so the supervisor sees one process).
func slowWorkerBinary(t *testing.T, delay time.Duration) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lazyfsd-slow")
	script := fmt.Sprintf("#!/bin/sh\nsleep %d\nexec %s \"$@\"\n", int(delay.Seconds()), env.Bin("lazyfsd"))
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestContainerDuringRestore starts a container while the restarted
// snapshotter is still mounting the image's layers again after their worker
// died. The container must see the whole image, or fail to start; it must
// never run on the empty directories the detached mounts leave behind.
//
// The window is a few hundred milliseconds on a fast node (worker start,
// TOC load, mount, INIT); a worker binary that starts slowly widens it so
// that the outcome does not depend on timing. The container's shell comes
// from a bind mount, so that it runs even on an empty rootfs and can say
// what it saw.
func TestContainerDuringRestore(t *testing.T) {
	wrapper := slowWorkerBinary(t, workerStartDelay)
	s := startStackWith(t, harness.V2, harness.SnapshotterOptions{Env: env, Config: map[string]any{
		"workers": map[string]any{"binary": wrapper, "ready_timeout": (3 * workerStartDelay).String()},
	}})
	img := s.convertToEStargz(t, "")
	s.pullLazily(t, img)
	ctx := context.Background()
	worker := onlyWorker(t, s.snap)
	mounts := fuseMounts(t, s.snap)

	busybox, err := env.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	hostbin := t.TempDir()
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostbin, "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}

	s.snap.Kill()
	killProcess(t, worker.PID)
	if err := s.snap.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	script := `bb=/hostbin/busybox
if $bb sha256sum -c -s ` + harness.TestImageChecksumsPath + ` 2>/dev/null; then echo verified
else echo "not verified; / holds: $($bb ls / | $bb tr '\n' ' ')"; fi`
	out, err := s.ctrd.CtrRun(ctx, "--snapshotter", "lazyfs", "--rm",
		"--mount", "type=bind,src="+hostbin+",dst=/hostbin,options=rbind:ro",
		img.ref, "during-restore", "/hostbin/busybox", "sh", "-c", script)
	started := time.Since(restarted).Round(time.Millisecond)
	switch {
	case err != nil:
		t.Logf("container started %v after the restart was refused (acceptable): %v", started, err)
	case strings.TrimSpace(out) == "verified":
		t.Logf("container started %v after the restart saw the whole image", started)
	default:
		t.Errorf("container started %v after the restart, before the layers were mounted again, ran on a partial image: %s", started, strings.TrimSpace(out))
	}

	waitRemounted(t, s, img, worker.PID, mounts)
	s.runQuickChecks(t, img.ref, "after-slow-restore")
}
