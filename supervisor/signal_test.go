package supervisor

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// TestSignalWorkerRefusesNonWorkers guards signalWorker: a lost worker pid
// (0, negative, init, the snapshotter itself, a process of another
// session) is refused, never signalled. The refusals use the null signal,
// so that a removed guard shows as a nil error instead of stopping the test
// runner's process group.
func TestSignalWorkerRefusesNonWorkers(t *testing.T) {
	pgid := syscall.Getpgrp()
	sameSession := exec.Command("sleep", "60")
	if err := sameSession.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sameSession.Process.Kill()
		sameSession.Wait()
	})
	// Each refusal by its own check: the later ones would refuse some of
	// these pids too, but each check must hold on its own.
	for _, tc := range []struct {
		name, why string
		pid       int
	}{
		{"own process group", "not a worker's pid", 0},
		{"every process", "not a worker's pid", -1},
		{"a process group", "not a worker's pid", -pgid},
		{"init", "not a worker's pid", 1},
		{"the snapshotter", "the snapshotter itself", os.Getpid()},
		{"a child in the snapshotter's session", "not a session leader", sameSession.Process.Pid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := signalWorker(tc.pid, syscall.Signal(0))
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("signalWorker(%d): %v, want a refusal (invalid argument): %s", tc.pid, err, tc.why)
			}
		})
	}
	// The refused child got nothing: it still runs.
	if err := signalWorker(sameSession.Process.Pid, syscall.SIGKILL); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("SIGKILL to a child in the snapshotter's session: %v, want a refusal", err)
	}
	if err := unix.Kill(sameSession.Process.Pid, 0); err != nil {
		t.Fatalf("the refused child is gone: %v", err)
	}
}

// TestSignalWorkerSignalsSessionLeaders: a process started as every worker
// is (Setsid) gets the signal; one that is gone reports ESRCH.
func TestSignalWorkerSignalsSessionLeaders(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if err := signalWorker(pid, syscall.SIGKILL); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("signalWorker(%d, SIGKILL): %v", pid, err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("worker stand-in ended with %v, want killed by SIGKILL", err)
	}
	if err := signalWorker(pid, syscall.SIGKILL); !errors.Is(err, unix.ESRCH) {
		t.Fatalf("signalWorker on a reaped pid: %v, want ESRCH", err)
	}
}
