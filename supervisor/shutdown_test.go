package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/internal/testregistry"
	"github.com/lazyfs/lazyfs/layout"
)

// A layer under a container's overlay keeps its worker serving through a
// shutdown, and the next supervisor re-adopts it; so does a layer whose
// unmount fails with EBUSY (a process holds it open). An unused layer is
// unmounted and its worker stopped. Then a drain leaves nothing.
func TestShutdownKeepsBusyLayersThenDrains(t *testing.T) {
	e := newEnv(t, PerImage)
	s := e.supervisor()
	busy, idle, held := e.mountpoint("busy"), e.mountpoint("idle"), e.mountpoint("held")
	s.mount("busy", busy, e.layer(0, "v1"))
	s.mount("idle", idle, e.layer(1, "v2"))
	s.mount("held", held, e.layer(1, "v3"))
	pids := s.pids()
	rootfs := overlayOn(t, e, busy)
	f, err := os.Open(held)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	kept := s.shutdown(KeepBusy)
	busyID, idleID, heldID := e.workerID("v1"), e.workerID("v2"), e.workerID("v3")
	slices.SortFunc(kept, func(a, b KeptWorker) int { return strings.Compare(a.ID, b.ID) })
	want := []KeptWorker{{busyID, pids[busyID], 1}, {heldID, pids[heldID], 1}}
	slices.SortFunc(want, func(a, b KeptWorker) int { return strings.Compare(a.ID, b.ID) })
	if !slices.Equal(kept, want) {
		t.Errorf("kept %+v, want %+v", kept, want)
	}
	if !mounted(t, held) {
		t.Error("the layer held open was unmounted")
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
	if got := s2.pids(); len(got) != 2 || got[busyID] != pids[busyID] || got[heldID] != pids[heldID] {
		t.Fatalf("re-adopted workers %v, want %s with pid %d and %s with pid %d", got, busyID, pids[busyID], heldID, pids[heldID])
	}
	recs := s2.records()
	if len(recs) != 2 || len(recs[busyID].Mounts) != 1 || recs[busyID].Mounts["busy"].Mountpoint != busy ||
		len(recs[heldID].Mounts) != 1 || recs[heldID].Mounts["held"].Mountpoint != held {
		t.Errorf("workers.db after the shutdown: %+v, want %s serving the busy layer and %s the held one", recs, busyID, heldID)
	}
	f.Close()

	if kept := s2.shutdown(UnmountAll); len(kept) != 0 {
		t.Errorf("a drain kept %+v", kept)
	}
	if mounted(t, busy) {
		t.Error("a drain left the busy layer mounted")
	}
	waitGone(t, pids[busyID])
	waitGone(t, pids[heldID])
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

// TestShutdownStopsAnUnusedSharedWorker: a worker that does not exit when
// idle (shared mode) and serves no layer a container uses is stopped, not
// kept: only busy layers justify a worker outliving the snapshotter.
func TestShutdownStopsAnUnusedSharedWorker(t *testing.T) {
	e := newEnv(t, Shared)
	s := e.supervisor()
	mp := e.mountpoint("m1")
	s.mount("m1", mp, e.layer(0, "v1"))
	pid := s.pids()["shared"]
	if kept := s.shutdown(KeepBusy); len(kept) != 0 {
		t.Fatalf("kept %+v, want no worker: no layer is used", kept)
	}
	if mounted(t, mp) {
		t.Error("the unused layer is still mounted")
	}
	waitGone(t, pid)
}

// TestShutdownReportsAFailedUnmount: a layer that cannot be unmounted at a
// stop is reported by Shutdown, naming it, and stays served: its worker is
// kept and still recorded with it, so the next snapshotter serves it
// instead of finding a stale mount; its unused layer is released.
func TestShutdownReportsAFailedUnmount(t *testing.T) {
	opts := workerConfigOptions(t)
	s, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	// A name too long for umount(2) (ENAMETOOLONG): neither unmounted nor
	// "not mounted".
	mp := filepath.Join(t.TempDir(), strings.Repeat("x", 300))
	// Its other layer, which no container uses, goes (a plain directory:
	// unmounting it finds nothing mounted): dropped from its record, its
	// connection let go.
	unused := &mountState{id: "m3", mountpoint: t.TempDir(), layer: fakeLayer("v3"), conn: heldConn(t, initState(41, true))}
	w := fakeWorker("w", &mountState{id: "m1", mountpoint: mp, layer: fakeLayer("v1"), conn: failover.NewConn(-1, failover.InitState{})}, unused)
	w.api = daemonapi.NewClient(filepath.Join(opts.RunDir, "none.sock"), "w")
	// The same for a worker that is gone: it is not reported kept (the
	// next snapshotter would look for it in vain).
	dead := fakeWorker("dead", &mountState{id: "m2", mountpoint: mp, layer: fakeLayer("v2"), conn: failover.NewConn(-1, failover.InitState{})})
	dead.api = daemonapi.NewClient(filepath.Join(opts.RunDir, "none.sock"), "dead")
	close(dead.exited)
	s.mu.Lock()
	s.workers["w"], s.workers["dead"] = w, dead
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	kept, err := s.Shutdown(ctx, KeepBusy)
	if err == nil || !strings.Contains(err.Error(), "mount m1") || !strings.Contains(err.Error(), "mount m2") ||
		!errors.Is(err, unix.ENAMETOOLONG) {
		t.Errorf("Shutdown: %v; want the failed unmounts of m1 and m2 reported", err)
	}
	if want := []KeptWorker{{ID: "w", PID: os.Getpid(), Mounts: 1}}; !slices.Equal(kept, want) {
		t.Errorf("kept %+v, want %+v: the layer left mounted is still served", kept, want)
	}
	reg, err := openRegistry(layout.Root(opts.Root).WorkersDB())
	if err != nil {
		t.Fatal(err)
	}
	defer reg.close()
	recs, err := reg.list()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(recs, func(r record) bool { return r.ID == "w" })
	if i < 0 || len(recs[i].Mounts) != 1 || recs[i].Mounts["m1"].Mountpoint != mp {
		t.Errorf("workers.db after the stop: %+v; want w recorded with m1 alone", recs)
	}
	if unused.conn.Held() {
		t.Error("the connection of the unmounted layer is still held")
	}
}
