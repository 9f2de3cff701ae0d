package supervisor

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestSameProcess(t *testing.T) {
	self := os.Getpid()
	start, err := processStartTime(self)
	if err != nil {
		t.Fatal(err)
	}
	if !sameProcess(self, start) {
		t.Fatal("this process is not itself")
	}
	if sameProcess(self, start+1) {
		t.Fatal("a different start time matched: pid reuse would go unnoticed")
	}

	// A zombie (exited, not reaped yet) is gone for the supervisor.
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	zstart, err := processStartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for sameProcess(cmd.Process.Pid, zstart) {
		if time.Now().After(deadline) {
			t.Fatal("an exited, unreaped child still counts as alive")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
