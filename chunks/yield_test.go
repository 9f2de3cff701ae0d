package chunks

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestYieldToForeground guards what lets a container's read pass a layer's
// proof: a background stream that yields waits while a foreground request
// is in flight, and until quiet after it ended; it does not wait for other
// classes, other registries, or past max; it gives up with ctx.
func TestYieldToForeground(t *testing.T) {
	const long = time.Minute // never reached unless the guard is gone
	ctx := context.Background()

	s := NewScheduler(SchedulerOptions{})
	if err := s.YieldToForeground(cancelled(), "reg", long, long); err != nil {
		t.Fatalf("nothing running: %v, want no wait", err)
	}
	// Prefetch and background requests in flight, and reads of another
	// registry, are no reason to wait.
	for _, class := range []Priority{Prefetch, Background} {
		release, err := s.Acquire(ctx, "reg", class, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.YieldToForeground(cancelled(), "reg", 0, long); err != nil {
			t.Errorf("a %v request in flight made it wait: %v", class, err)
		}
		release()
	}
	other, err := s.Acquire(ctx, "other", Foreground, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.YieldToForeground(cancelled(), "reg", 0, long); err != nil {
		t.Errorf("a read of another registry made it wait: %v", err)
	}
	other()

	// A read in flight: it waits, and returns only once the read ended.
	read, err := s.Acquire(ctx, "reg", Foreground, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.YieldToForeground(cancelled(), "reg", 0, long); !errors.Is(err, context.Canceled) {
		t.Errorf("a read in flight: %v, want a wait (ended by ctx)", err)
	}
	done := make(chan time.Time, 1)
	go func() {
		if err := s.YieldToForeground(ctx, "reg", 50*time.Millisecond, long); err != nil {
			t.Error(err)
		}
		done <- time.Now()
	}()
	read()
	ended := time.Now()
	select {
	case at := <-done:
		if at.Sub(ended) < 50*time.Millisecond-yieldPoll {
			t.Errorf("returned %v after the read ended, want at least the quiet time", at.Sub(ended))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still waiting 10 s after the read ended")
	}

	// Right after a read, quiet still applies; max bounds any wait.
	read, err = s.Acquire(ctx, "reg", Foreground, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer read()
	start := time.Now()
	if err := s.YieldToForeground(ctx, "reg", long, 30*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= 10*time.Second {
		t.Errorf("max of 30ms: waited %v", d)
	}

	var none *Scheduler
	if err := none.YieldToForeground(cancelled(), "reg", long, long); err != nil {
		t.Errorf("nil scheduler: %v", err)
	}
}

// TestYieldWaitsForReadsServedWithoutRequests: a read marked by
// ReadStarted (one the disk cache or a prefetch serves, which makes no
// foreground request) holds background work back like a request, and
// until quiet after it ended.
func TestYieldWaitsForReadsServedWithoutRequests(t *testing.T) {
	const long = time.Minute
	s := NewScheduler(SchedulerOptions{})
	done := s.ReadStarted("reg")
	if err := s.YieldToForeground(cancelled(), "reg", 0, long); !errors.Is(err, context.Canceled) {
		t.Errorf("a read running: %v, want a wait (ended by ctx)", err)
	}
	if err := s.YieldToForeground(cancelled(), "other", 0, long); err != nil {
		t.Errorf("a read of another registry made it wait: %v", err)
	}
	done()
	if err := s.YieldToForeground(cancelled(), "reg", long, long); !errors.Is(err, context.Canceled) {
		t.Errorf("right after the read: %v, want a wait for the quiet period", err)
	}
	if err := s.YieldToForeground(cancelled(), "reg", 0, long); err != nil {
		t.Errorf("read ended, no quiet period asked: %v, want no wait", err)
	}
	var nilSched *Scheduler
	nilSched.ReadStarted("reg")()
}
