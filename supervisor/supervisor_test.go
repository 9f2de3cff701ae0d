package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/internal/fusetest"
	"github.com/lazyfs/lazyfs/internal/testregistry"
)

func TestMountSpawnsWorkerAndUnmountStopsIt(t *testing.T) {
	e := newEnv(t, PerImage)
	s := e.supervisor()
	mp := e.mountpoint("m1")
	lay := e.layer(0, "v1")
	s.mount("m1", mp, lay)

	id := e.workerID("v1")
	pid := s.pids()[id]
	if pid == 0 || len(s.pids()) != 1 {
		t.Fatalf("workers %v, want one with id %s", s.pids(), id)
	}
	if processGone(pid) {
		t.Fatalf("worker %d is not running", pid)
	}
	testregistry.CheckFiles(t, testTimeout, mp, e.layers[0])

	t.Run("log file", func(t *testing.T) {
		path := filepath.Join(e.opts.LogDir, "daemons", id+".log")
		// The copy into the file runs behind the worker's writes.
		eventually(t, "worker log has lines", func() bool {
			data, err := os.ReadFile(path)
			return err == nil && strings.Count(string(data), "\n") > 0
		})
	})
	t.Run("workers.db", func(t *testing.T) {
		rec, ok := s.records()[id]
		if !ok {
			t.Fatalf("no record of worker %s", id)
		}
		if rec.PID != pid || rec.StartTime == 0 || rec.APISocket == "" || rec.ControlSocket == "" {
			t.Errorf("record = %+v", rec)
		}
		if m := rec.Mounts["m1"]; m.Mountpoint != mp || m.Layer == nil || !reflect.DeepEqual(*m.Layer, lay) {
			t.Errorf("record of mount m1 = %+v, want mountpoint %s and the layer", m, mp)
		}
	})
	t.Run("worker api", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(e.ctx, testTimeout)
		defer cancel()
		info, err := daemonapi.NewClient(s.records()[id].APISocket, id).Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.ID != id || info.PID != pid || len(info.Mounts) != 1 || info.Mounts[0].State != daemonapi.MountServing {
			t.Errorf("worker info = %+v, want %s (pid %d) serving m1", info, id, pid)
		}
	})

	s.unmount("m1", mp)
	if mounted(t, mp) {
		t.Error("still in mountinfo after Unmount")
	}
	waitGone(t, pid)
	eventually(t, "worker forgotten: not listed, not in workers.db, socket dir removed", func() bool {
		_, err := os.Stat(filepath.Join(e.opts.RunDir, "workers", id))
		return len(s.pids()) == 0 && len(s.records()) == 0 && errors.Is(err, os.ErrNotExist)
	})
}

// A mount of an id that is mounted already must not disturb the mount.
func TestMountTwiceIsRefused(t *testing.T) {
	e := newEnv(t, PerImage)
	s := e.supervisor()
	mp := e.mountpoint("m1")
	s.mount("m1", mp, e.layer(0, "v1"))

	ctx, cancel := context.WithTimeout(e.ctx, testTimeout)
	defer cancel()
	if err := s.Mount(ctx, "m1", mp, e.layer(0, "v1")); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second Mount of m1: %v, want ErrAlreadyExists", err)
	}
	if n := len(mountEntries(t, mp)); n != 1 {
		t.Errorf("%d mounts at %s, want 1", n, mp)
	}
	testregistry.CheckFiles(t, testTimeout, mp, e.layers[0])
}

func TestCloseStopsWorkersAndUnmounts(t *testing.T) {
	e := newEnv(t, PerImage)
	base := fusetest.FuseFDs(t)
	s := e.supervisor()
	mps := map[string]string{"m1": e.mountpoint("m1"), "m2": e.mountpoint("m2")}
	s.mount("m1", mps["m1"], e.layer(0, "v1"))
	s.mount("m2", mps["m2"], e.layer(1, "v2"))
	pids := s.pids()
	if len(pids) != 2 {
		t.Fatalf("workers %v, want one per image", pids)
	}
	testregistry.CheckFiles(t, testTimeout, mps["m2"], e.layers[1])

	s.close(false)
	for id, mp := range mps {
		if mounted(t, mp) {
			t.Errorf("%s still mounted at %s after Close", id, mp)
		}
	}
	for id, pid := range pids {
		if !processGone(pid) {
			t.Errorf("worker %s (pid %d) still runs after Close", id, pid)
		}
	}
	if got := fusetest.FuseFDs(t); got != base {
		t.Errorf("%d /dev/fuse fds open after Close, want %d", got, base)
	}
	reg, err := openRegistry(filepath.Join(e.opts.Root, "workers.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.close()
	if recs, err := reg.list(); err != nil || len(recs) != 0 {
		t.Errorf("workers.db after Close: %v, %v; want empty", recs, err)
	}
}

func TestCloseKeepingWorkersThenReadopt(t *testing.T) {
	e := newEnv(t, PerImage)
	base := fusetest.FuseFDs(t)
	s := e.supervisor()
	mp := e.mountpoint("m1")
	lay := e.layer(0, "v1")
	s.mount("m1", mp, lay)
	id := e.workerID("v1")
	pid := s.pids()[id]

	s.close(true)
	if processGone(pid) {
		t.Fatal("worker gone after Close(keepWorkers)")
	}
	if !mounted(t, mp) {
		t.Fatal("mount gone after Close(keepWorkers)")
	}
	// The worker alone holds the connection now; it keeps serving.
	if got := fusetest.FuseFDs(t); got != base {
		t.Errorf("%d /dev/fuse fds open in the closed supervisor, want %d", got, base)
	}
	testregistry.CheckFiles(t, testTimeout, mp, e.layers[0])

	s2 := e.supervisor()
	if got := s2.pids(); len(got) != 1 || got[id] != pid {
		t.Fatalf("re-adopted workers %v, want %s with pid %d", got, id, pid)
	}
	ctx, cancel := context.WithTimeout(e.ctx, testTimeout)
	defer cancel()
	if err := s2.Restore(ctx, "m1", mp, lay); err != nil {
		t.Fatalf("Restore of a mount its worker serves: %v", err)
	}
	if err := s2.Wait(ctx, []string{"m1"}); err != nil {
		t.Fatalf("Wait after Restore: %v", err)
	}
	if got := s2.pids(); len(got) != 1 || got[id] != pid {
		t.Errorf("workers after Restore %v, want only %s with pid %d", got, id, pid)
	}
	if n := len(mountEntries(t, mp)); n != 1 {
		t.Errorf("%d mounts at %s after Restore, want 1", n, mp)
	}
	testregistry.CheckFiles(t, testTimeout, mp, e.layers[0])

	s2.close(false)
	if mounted(t, mp) {
		t.Error("still mounted after Close")
	}
	waitGone(t, pid)
}

func TestDeadWorkerIsForgottenAndItsLayerRestored(t *testing.T) {
	e := newEnv(t, PerImage)
	s := e.supervisor()
	mp := e.mountpoint("m1")
	lay := e.layer(0, "v1")
	s.mount("m1", mp, lay)
	id := e.workerID("v1")
	old := s.pids()[id]
	s.close(true)

	// The worker dies while no supervisor runs, and the registry is down
	// when the next one starts.
	if err := e.kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, old)
	e.reg.Stop()

	s2 := e.supervisor()
	if got := s2.pids(); len(got) != 0 {
		t.Errorf("workers after New %v, want the dead one forgotten", got)
	}
	if got := s2.records(); len(got) != 0 {
		t.Errorf("workers.db after New has %v, want the dead worker removed", got)
	}
	if !mounted(t, mp) {
		t.Fatal("test setup: the dead worker's stale mount is gone already")
	}
	ctx, cancel := context.WithTimeout(e.ctx, testTimeout)
	defer cancel()
	if err := s2.Restore(ctx, "m1", mp, lay); err != nil {
		t.Fatalf("Restore with the registry down: %v", err)
	}
	if err := s2.Wait(ctx, []string{"m1"}); err != nil {
		t.Fatalf("Wait after Restore: %v", err)
	}
	if n := len(mountEntries(t, mp)); n != 1 {
		t.Errorf("%d mounts at %s after Restore, want 1 (the stale one detached)", n, mp)
	}
	if pid := s2.pids()[id]; pid == 0 || pid == old {
		t.Errorf("worker %s has pid %d, want a new one (old %d)", id, pid, old)
	}
	testregistry.CheckListing(t, testTimeout, mp, e.layers[0])

	e.reg.Start()
	testregistry.CheckFiles(t, testTimeout, mp, e.layers[0])
}

func TestSharedModeUsesOneWorker(t *testing.T) {
	e := newEnv(t, Shared)
	s := e.supervisor()
	mp1, mp2 := e.mountpoint("m1"), e.mountpoint("m2")
	s.mount("m1", mp1, e.layer(0, "v1"))
	s.mount("m2", mp2, e.layer(1, "v2"))

	pids := s.pids()
	pid := pids["shared"]
	if len(pids) != 1 || pid == 0 {
		t.Fatalf("workers %v, want only %q", pids, "shared")
	}
	testregistry.CheckFiles(t, testTimeout, mp1, e.layers[0])
	testregistry.CheckFiles(t, testTimeout, mp2, e.layers[1])
	if m := s.records()["shared"].Mounts; len(m) != 2 {
		t.Errorf("workers.db has mounts %v for the shared worker, want m1 and m2", m)
	}

	// The shared worker outlives its last mount. A worker decides to exit
	// when idle inside the detach, before it answers it, so once the
	// unmounts returned its own state tells whether it is leaving.
	s.unmount("m1", mp1)
	s.unmount("m2", mp2)
	s.mu.Lock()
	w := s.workers["shared"]
	s.mu.Unlock()
	if w == nil || w.pid != pid {
		t.Fatalf("after the last unmount the shared worker is %+v, want pid %d", w, pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	info, err := w.api.Info(ctx)
	if err != nil || info.PID != pid || info.State != daemonapi.DaemonRunning {
		t.Fatalf("the shared worker answers %+v, %v after its last unmount; want pid %d %s", info, err, pid, daemonapi.DaemonRunning)
	}
	s.close(false)
	waitGone(t, pid)
}

// TestWaitReportsPendingAndFailedRemounts guards the contract Prepare relies
// on: a layer being mounted again is waited for, and one that could not be
// is an error, never silently an empty directory.
func TestWaitReportsPendingAndFailedRemounts(t *testing.T) {
	p := newPendingMounts()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.wait(ctx, "unknown"); err != nil {
		t.Fatalf("wait on an id that is not pending: %v", err)
	}
	p.begin("m1")
	if err := p.wait(ctx, "m1"); !errdefs.IsUnavailable(err) {
		t.Fatalf("wait on a pending mount past the deadline: %v, want unavailable", err)
	}
	done := make(chan error, 1)
	go func() { done <- p.wait(context.Background(), "m1") }()
	p.end("m1", errors.New("worker refused the layer"))
	if err := <-done; !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "worker refused") {
		t.Fatalf("wait on a failed remount: %v", err)
	}
	p.begin("m1")
	p.end("m1", nil)
	if err := p.wait(context.Background(), "m1"); err != nil {
		t.Fatalf("wait after a successful remount: %v", err)
	}
}

// TestCloseReportsAFailedUnmount: Close reports a layer it could not
// unmount, naming it, instead of returning as if all were clean.
func TestCloseReportsAFailedUnmount(t *testing.T) {
	opts := workerConfigOptions(t)
	s, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	// A name too long for umount(2) (ENAMETOOLONG), served by a worker
	// that is gone already (nothing to stop).
	mp := filepath.Join(t.TempDir(), strings.Repeat("x", 300))
	w := fakeWorker("w", &mountState{id: "m1", mountpoint: mp, layer: fakeLayer("v1"), conn: failover.NewConn(-1, failover.InitState{})})
	w.api = daemonapi.NewClient(filepath.Join(opts.RunDir, "none.sock"), "w")
	close(w.exited)
	s.mu.Lock()
	s.workers["w"] = w
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.Close(ctx, false); !errors.Is(err, syscall.ENAMETOOLONG) || !strings.Contains(err.Error(), "xxxx") {
		t.Errorf("Close: %v; want the failed unmount of %s", err, mp)
	}
}
