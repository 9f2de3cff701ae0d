package supervisor

import (
	"testing"
	"time"
)

// TestBackoff: the first successor starts at once; later ones wait a
// jittered, doubling delay that never passes maxBackoff.
func TestBackoff(t *testing.T) {
	s := &Supervisor{opts: Options{RestartBackoff: 100 * time.Millisecond}}
	if d := s.backoff(0); d != 0 {
		t.Errorf("backoff(0) = %v, want 0", d)
	}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 20: maxBackoff} {
		for range 20 {
			if d := s.backoff(n); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", n, d, want/2, want)
			}
		}
	}
}

// TestCountDeath: a death soon after a worker began serving adds to the
// quick deaths in a row; one after it served for the window resets them.
func TestCountDeath(t *testing.T) {
	s := &Supervisor{opts: Options{CrashLoopWindow: time.Minute}, quick: map[string]int{}}
	recent := &worker{id: "w", servedAt: time.Now().UnixNano()}
	for want := 1; want <= 3; want++ {
		if got := s.countDeath(recent); got != want {
			t.Fatalf("quick death %d counted as %d", want, got)
		}
	}
	old := &worker{id: "w", servedAt: time.Now().Add(-2 * time.Minute).UnixNano()}
	if got := s.countDeath(old); got != 0 {
		t.Errorf("a death after serving past the window counts %d, want 0 (reset)", got)
	}
	if got := s.countDeath(&worker{id: "other", servedAt: time.Now().UnixNano()}); got != 1 {
		t.Errorf("another id's first quick death counts %d, want 1", got)
	}
}
