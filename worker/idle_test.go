package worker_test

import (
	"testing"
	"time"

	"github.com/containerd/log/logtest"
)

// An idle worker exits after its grace, counted from its last detach; a
// layer loaded meanwhile keeps it.
func TestIdleGrace(t *testing.T) {
	const grace = 200 * time.Millisecond
	e := newEnv(t)
	w := newWorkerIdle(t, e.root, true, grace)
	ctx := logtest.WithT(t.Context(), t)
	load(t, w, e.request("a", ""))
	if err := w.Detach(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if isDone(w) {
		t.Fatal("done at once after the last detach, want a grace")
	}
	// A layer that comes during the grace keeps the worker: three graces
	// pass without an exit.
	load(t, w, e.request("b", ""))
	select {
	case <-w.Done():
		t.Fatal("exited while it serves a layer loaded during its grace")
	case <-time.After(3 * grace):
	}
	// Taken before the call: the grace starts inside Detach.
	detached := time.Now()
	if err := w.Detach(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Done():
		if took := time.Since(detached); took < grace {
			t.Errorf("exited %v after the last detach, want at least %v", took, grace)
		}
	case <-time.After(testTimeout):
		t.Fatalf("still running %v after the last detach, grace %v", testTimeout, grace)
	}
}

// A worker that never gets a layer exits after its grace too.
func TestIdleGraceFromStart(t *testing.T) {
	w := newWorkerIdle(t, t.TempDir(), true, 50*time.Millisecond)
	select {
	case <-w.Done():
	case <-time.After(testTimeout):
		t.Fatal("a worker that never got a layer is still running")
	}
}
