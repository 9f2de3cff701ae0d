package supervisor

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"
)

// standbyPID is the pid of the standby process, 0 if there is none.
func (s *testSupervisor) standbyPID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.standby == nil {
		return 0
	}
	return s.standby.pid
}

// TestSuccessorIsTheStandby: the process that takes a dead worker over is
// the standby started ahead of need (no exec on the takeover's path), and a
// new standby replaces it, not before standbyUsedGap; Close ends the
// standby.
func TestSuccessorIsTheStandby(t *testing.T) {
	e := newEnv(t, PerImage)
	s := e.supervisor()
	mp := e.mountpoint("m1")
	s.mount("m1", mp, e.layer(0, "v1"))
	id := e.workerID("v1")
	var standby int
	eventually(t, "a standby is started", func() bool {
		standby = s.standbyPID()
		return standby != 0 && standby != s.pids()[id]
	})
	old := s.pids()[id]
	killed := time.Now()
	if err := e.kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if pid := s.waitSuccessor(t, id, old, "m1"); pid != standby {
		t.Errorf("successor pid %d, want the standby's %d", pid, standby)
	}
	eventually(t, "a new standby is started", func() bool {
		pid := s.standbyPID()
		return pid != 0 && pid != standby
	})
	// Not at once: its start must not compete with the successor.
	if waited := time.Since(killed); waited < standbyUsedGap {
		t.Errorf("a new standby %v after the last one was used, want at least %v", waited, standbyUsedGap)
	}
	last := s.standbyPID()
	s.close(false)
	waitGone(t, last)
}

// TestStandbyReplacedAfterItDies: a standby that dies unused is replaced,
// but only after standbyRefillGap (a binary that cannot start must not
// make the supervisor spin); Close ends the standby.
func TestStandbyReplacedAfterItDies(t *testing.T) {
	opts := workerConfigOptions(t)
	opts.RecoverPolicy = Failover
	// A standby waits for its identity on fd 4 and exits at EOF.
	opts.Binary = fakeBinary(t, `exec -a "fake $2" bash -c 'read -r _ <&4'`)
	s := &testSupervisor{Supervisor: newFakeSupervisor(t, opts)}
	var old int
	eventually(t, "a standby is started", func() bool {
		old = s.standbyPID()
		return old != 0
	})
	if !slices.Contains(workerPIDs(opts.RunDir), old) {
		t.Fatalf("standby pid %d is not a process of this test (%v)", old, workerPIDs(opts.RunDir))
	}
	killed := time.Now()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var next int
	eventually(t, "a new standby is started", func() bool {
		next = s.standbyPID()
		return next != 0 && next != old
	})
	if waited := time.Since(killed); waited < standbyRefillGap {
		t.Errorf("a new standby %v after the last one died, want at least %v", waited, standbyRefillGap)
	}
	if err := s.Close(context.Background(), false); err != nil {
		t.Errorf("Close: %v", err)
	}
	eventually(t, "Close ends the standby", func() bool { return len(workerPIDs(opts.RunDir)) == 0 })
}

// TestNoStandbyUnderRemount: with recover_policy remount no standby is
// started (start-up time costs no reader there): none runs, none is being
// started.
func TestNoStandbyUnderRemount(t *testing.T) {
	opts := workerConfigOptions(t)
	opts.RecoverPolicy = Remount
	opts.Binary = fakeBinary(t, `exec -a "fake $2" bash -c 'read -r _ <&4'`)
	s := newFakeSupervisor(t, opts)
	s.refillStandby() // as after a takeover
	s.mu.Lock()
	standby, refilling := s.standby, s.refilling
	s.mu.Unlock()
	if standby != nil || refilling || len(workerPIDs(opts.RunDir)) != 0 {
		t.Errorf("standby %v, refilling %v, processes %v: want none under recover_policy remount", standby, refilling, workerPIDs(opts.RunDir))
	}
}
