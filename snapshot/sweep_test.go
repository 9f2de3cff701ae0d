package snapshot

import (
	"context"
	"errors"
	"testing"

	"github.com/sirupsen/logrus"
)

// gatedRemover holds each RemoveForged call until the test releases it.
type gatedRemover struct {
	called  chan struct{}
	release chan error // the call's error
	inUse   int
}

func (g *gatedRemover) RemoveForged(context.Context) (int, int, error) {
	g.called <- struct{}{}
	return 0, g.inUse, <-g.release
}

// TestSweepLogsSnapshotsInUse: forged snapshots left in use are logged
// (their containers keep them); none left, nothing is.
func TestSweepLogsSnapshotsInUse(t *testing.T) {
	for _, inUse := range []int{0, 1} {
		g := &gatedRemover{called: make(chan struct{}, 1), release: make(chan error, 1), inUse: inUse}
		s, err := New(testContext(t), t.TempDir(), WithForgedRemover(g), noBackgroundProofs)
		if err != nil {
			t.Fatal(err)
		}
		ctx, hook := logged(t)
		g.release <- nil
		s.sweepForged(ctx, true)
		receive(t, g.called, "the removal")
		waitSweepIdle(t, s)
		s.Close()
		if got := len(entries(hook, logrus.WarnLevel, "still in use")); got != inUse {
			t.Fatalf("%d in use: %d warnings", inUse, got)
		}
	}
}

// TestSweepAskedAgainWhileRunning: a removal asked for while one runs (a
// container removed, a forgery found meanwhile) runs once the first ends,
// once, not in parallel; a failed removal is retried at the next Remove.
func TestSweepAskedAgainWhileRunning(t *testing.T) {
	g := &gatedRemover{called: make(chan struct{}, 4), release: make(chan error)}
	s, err := New(testContext(t), t.TempDir(), WithForgedRemover(g), noBackgroundProofs)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := testContext(t)

	s.sweepForged(ctx, true)
	receive(t, g.called, "the first removal")
	s.sweepForged(ctx, false)
	s.sweepForged(ctx, true)
	select {
	case <-g.called:
		t.Fatal("a second removal ran alongside the first")
	default:
	}
	g.release <- nil
	receive(t, g.called, "the removal asked for meanwhile")
	g.release <- nil
	waitSweepIdle(t, s)
	if len(g.called) != 0 {
		t.Fatal("the removals asked for meanwhile ran more than once")
	}

	// Nothing left in use: a Remove asks nothing.
	s.sweepForged(ctx, false)
	waitSweepIdle(t, s)
	if len(g.called) != 0 {
		t.Fatal("a Remove asked for a removal with nothing left behind")
	}

	// A removal that failed is asked for again at the next Remove.
	s.sweepForged(ctx, true)
	receive(t, g.called, "a removal after a forgery")
	g.release <- errors.New("containerd unavailable")
	waitSweepIdle(t, s)
	s.sweepForged(ctx, false)
	receive(t, g.called, "the retry of a failed removal")
	g.release <- nil
	waitSweepIdle(t, s)
}
