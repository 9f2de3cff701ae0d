package supervisor

import (
	"syscall"
	"testing"
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
// new standby replaces it; Close ends the standby.
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
	last := s.standbyPID()
	s.close(false)
	waitGone(t, last)
}
