package supervisor

import (
	"context"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/failover"
)

// TestReplaceRefusesUnheldMounts guards Replace's precondition: a worker
// serving a mount whose connection the snapshotter does not hold (a worker
// of an earlier run that could not hand it over) is not replaced: killing
// it would break that mount's readers. The worker serves on.
func TestReplaceRefusesUnheldMounts(t *testing.T) {
	e := newEnv(t, PerImage)
	s := e.supervisor()
	mp := e.mountpoint("m1")
	s.mount("m1", mp, e.layer(0, "v1"))
	id := e.workerID("v1")
	old := s.pids()[id]

	w, m := s.findMount("m1")
	w.mu.Lock()
	held := m.conn
	m.conn = failover.NewConn(-1, held.Init())
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		m.conn = held
		w.mu.Unlock()
	}()

	ctx, cancel := context.WithTimeout(e.ctx, testTimeout)
	defer cancel()
	if pid, err := s.Replace(ctx, id); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("Replace of a worker with an unheld mount: pid %d, %v; want failed precondition", pid, err)
	}
	if got := s.pids()[id]; got != old || processGone(old) {
		t.Fatalf("worker %s: pid %d (old %d, gone %v) after a refused Replace, want the old one serving", id, got, old, processGone(old))
	}
	if pids := workerPIDs(e.opts.RunDir); len(pids) > 2 { // the worker and the standby
		t.Fatalf("lazyfsd processes %v after a refused Replace: a successor was started", pids)
	}
}

// TestStoppedWorkerIsNotTakenOver guards handleExit's "expected" check: a
// worker the supervisor is stopping (a stop, an idle exit, the old process
// of a replacement) that exits with mounts still listed is forgotten, not
// taken over: a successor would serve what is being taken down.
func TestStoppedWorkerIsNotTakenOver(t *testing.T) {
	e := newEnv(t, PerImage)
	s := e.supervisor()
	s.mount("m1", e.mountpoint("m1"), e.layer(0, "v1"))
	id := e.workerID("v1")
	w := s.current(id)
	w.mu.Lock()
	w.stopping = true
	w.mu.Unlock()
	if err := e.kill(w.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// A takeover would keep the id registered until its successor
	// replaces the dead worker.
	eventually(t, "the stopped worker forgotten", func() bool { return s.current(id) == nil })
	if pids := s.pids(); len(pids) != 0 {
		t.Fatalf("workers %v after a stopped worker exited: a successor was started", pids)
	}
	if err := s.waitMounted("m1"); err != nil {
		t.Fatalf("a stopped worker's mount is reported as being mounted again: %v", err)
	}
}
