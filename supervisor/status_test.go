package supervisor

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestProcessRSS(t *testing.T) {
	rss, err := processRSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Errorf("processRSS(self) = %d, %v; want a positive size", rss, err)
	}
	if _, err := processRSS(1 << 30); err == nil {
		t.Error("processRSS of no process did not fail")
	}
}

// TestTicksToTime: the start time kept in the registry (clock ticks since
// boot) turns into this test process's wall-clock start.
func TestTicksToTime(t *testing.T) {
	before := time.Now()
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	ticks, err := processStartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	got := ticksToTime(ticks)
	// Boot time has a resolution of a second and ticks of 10ms.
	if got.Before(before.Add(-2*time.Second)) || got.After(time.Now().Add(2*time.Second)) {
		t.Errorf("start time %v, want about %v", got, before)
	}
	if !ticksToTime(0).IsZero() {
		t.Error("unknown start time is not zero")
	}
}

func TestWorkerHistory(t *testing.T) {
	var h workerHistory
	if n, e := h.get("w"); n != 0 || e != nil {
		t.Fatalf("empty history: %d, %+v", n, e)
	}
	h.exited(&worker{id: "w", pid: 42})
	h.restarted("w")
	h.restarted("w")
	n, e := h.get("w")
	if n != 2 || e == nil || e.PID != 42 || e.Cause != "unknown" || e.Expected || e.Time.IsZero() {
		t.Errorf("history: %d restarts, last exit %+v; want 2 and pid 42", n, e)
	}
	h.exited(&worker{id: "w", pid: 43, stopping: true})
	if _, e := h.get("w"); e.PID != 43 || !e.Expected {
		t.Errorf("last exit %+v; want pid 43, expected", e)
	}
	if n, _ := h.get("other"); n != 0 {
		t.Errorf("another id has %d restarts", n)
	}
}
