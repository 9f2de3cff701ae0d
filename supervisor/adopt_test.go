package supervisor

import (
	"os/exec"
	"syscall"
	"testing"

	"github.com/lazyfs/lazyfs/layout"
)

// TestAdoptRefusesAnotherProcess guards adopt's pid check: a record whose
// pid (alive, with its start time) is not the process answering on the
// recorded API socket is not adopted. Otherwise the supervisor would take
// some other process for the worker: watch it, signal it, and believe the
// real worker's mounts safe while nothing watches their server.
func TestAdoptRefusesAnotherProcess(t *testing.T) {
	e := newEnv(t, PerImage)
	s := e.supervisor()
	s.mount("m1", e.mountpoint("m1"), e.layer(0, "v1"))
	id := e.workerID("v1")
	real := s.pids()[id]
	s.close(true)

	other := exec.Command("sleep", "60")
	other.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		other.Process.Kill()
		other.Wait()
	})
	start, err := processStartTime(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := openRegistry(layout.Root(e.opts.Root).WorkersDB())
	if err != nil {
		t.Fatal(err)
	}
	recs, err := reg.list()
	if err != nil || len(recs) != 1 || recs[0].PID != real {
		reg.close()
		t.Fatalf("workers.db: %+v, %v; want the record of pid %d", recs, err, real)
	}
	rec := recs[0]
	rec.PID, rec.StartTime = other.Process.Pid, start
	if err := reg.put(rec); err != nil {
		t.Fatal(err)
	}
	reg.close()

	s2 := e.supervisor()
	if w := s2.current(id); w != nil {
		t.Fatalf("worker %s adopted with pid %d, though its API socket is answered by pid %d", id, w.pid, real)
	}
}
