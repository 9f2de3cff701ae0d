package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/internal/testregistry"
)

// A layer under a container's overlay keeps its worker serving through a
// shutdown, and the next supervisor re-adopts it; an unused layer is
// unmounted and its worker stopped. Then a drain leaves nothing.
func TestShutdownKeepsBusyLayersThenDrains(t *testing.T) {
	e := newEnv(t, PerImage)
	s := e.supervisor()
	busy, idle := e.mountpoint("busy"), e.mountpoint("idle")
	s.mount("busy", busy, e.labels(0, "v1"))
	s.mount("idle", idle, e.labels(1, "v2"))
	pids := s.pids()
	rootfs := overlayOn(t, e, busy)

	kept := s.shutdown(KeepBusy)
	busyID, idleID := e.workerID("v1"), e.workerID("v2")
	if len(kept) != 1 || kept[0].ID != busyID || kept[0].PID != pids[busyID] || kept[0].Mounts != 1 {
		t.Errorf("kept %+v, want only %s (pid %d) with 1 mount", kept, busyID, pids[busyID])
	}
	if mounted(t, idle) {
		t.Error("the unused layer is still mounted")
	}
	waitGone(t, pids[idleID])
	if processGone(pids[busyID]) || !mounted(t, busy) {
		t.Fatal("the busy layer's worker or mount is gone")
	}
	// The container reads on through its overlay.
	testregistry.CheckFiles(t, testTimeout, rootfs, e.layers[0])

	s2 := e.supervisor()
	if got := s2.pids(); len(got) != 1 || got[busyID] != pids[busyID] {
		t.Fatalf("re-adopted workers %v, want %s with pid %d", got, busyID, pids[busyID])
	}
	recs := s2.records()
	if m := recs[busyID].Mounts; len(recs) != 1 || len(m) != 1 || m["busy"].Mountpoint != busy {
		t.Errorf("workers.db after the shutdown: %+v, want %s serving only the busy layer", recs, busyID)
	}

	if kept := s2.shutdown(UnmountAll); len(kept) != 0 {
		t.Errorf("a drain kept %+v", kept)
	}
	if mounted(t, busy) {
		t.Error("a drain left the busy layer mounted")
	}
	waitGone(t, pids[busyID])
}

// overlayOn mounts an overlay with lower as its lower dir, as containerd
// mounts a container's rootfs, and unmounts it at cleanup.
func overlayOn(t *testing.T, e *env, lower string) string {
	t.Helper()
	dir := t.TempDir()
	rootfs, upper, work := filepath.Join(dir, "rootfs"), filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	for _, d := range []string{rootfs, upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("overlay", rootfs, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if e.t.Failed() {
			e.abortAll()
		}
		if err := failover.Unmount(rootfs, true); err != nil {
			t.Error(err)
		}
	})
	return rootfs
}

// shutdown shuts the supervisor down, failing the test if that takes too long.
func (s *testSupervisor) shutdown(mode ShutdownMode) []KeptWorker {
	t := s.e.t
	t.Helper()
	s.closed = true
	ctx, cancel := context.WithTimeout(s.e.ctx, testTimeout)
	defer cancel()
	type result struct {
		kept []KeptWorker
		err  error
	}
	done := make(chan result, 1)
	go func() {
		kept, err := s.Shutdown(ctx, mode)
		done <- result{kept, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Errorf("Shutdown(%d): %v", mode, r.err)
		}
		return r.kept
	case <-time.After(testTimeout + 5*time.Second):
		t.Fatalf("Shutdown(%d) did not return", mode)
		return nil
	}
}
