package chunks

import (
	"context"
	"testing"
	"time"
)

// cancelled is a context that has ended: Acquire with it succeeds only
// when the slot is free at once, which makes "does not wait" testable
// without timing.
func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// acquireAsync starts an Acquire and returns the channel its release
// function (or nil on error) arrives on.
func acquireAsync(s *Scheduler, class Priority, lift *Lift) <-chan func() {
	got := make(chan func(), 1)
	go func() {
		release, err := s.Acquire(context.Background(), "reg", class, 1, lift)
		if err != nil {
			release = nil
		}
		got <- release
	}()
	return got
}

// waitQueued polls until n requests of class wait for "reg".
func waitQueued(t *testing.T, s *Scheduler, class Priority, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		got := len(s.slots("reg").waiting[class])
		s.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s requests waiting, want %d", got, class, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func granted(t *testing.T, ch <-chan func(), what string) func() {
	t.Helper()
	select {
	case release := <-ch:
		if release == nil {
			t.Fatalf("%s: Acquire failed", what)
		}
		return release
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not granted", what)
		return nil
	}
}

func notGranted(t *testing.T, ch <-chan func(), what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: granted, want it to wait", what)
	default:
	}
}

// TestForegroundNeverQueuesBehindLowerClasses guards admits: prefetch and
// background requests filling every shared slot of a registry do not delay
// a foreground request, which has slots of its own; and with the
// foreground slots full, a foreground request still does not wait for
// lower classes.
func TestForegroundNeverQueuesBehindLowerClasses(t *testing.T) {
	s := NewScheduler(SchedulerOptions{Concurrency: 2, BackgroundConcurrency: 1})
	ctx := context.Background()
	for _, class := range []Priority{Prefetch, Background} {
		if _, err := s.Acquire(ctx, "reg", class, 1, nil); err != nil {
			t.Fatalf("%s: %v", class, err)
		}
	}
	for i := range 2 {
		if _, err := s.Acquire(cancelled(), "reg", Foreground, 1, nil); err != nil {
			t.Fatalf("foreground request %d behind 2 lower-class requests waited: %v", i+1, err)
		}
	}
	if _, err := s.Acquire(cancelled(), "reg", Foreground, 1, nil); err == nil {
		t.Fatal("a third foreground request got a slot: Concurrency 2 is not enforced for foreground")
	}
	// Another registry has slots of its own.
	if _, err := s.Acquire(cancelled(), "other", Foreground, 1, nil); err != nil {
		t.Fatalf("another registry's foreground request waited: %v", err)
	}
}

// TestLowerClassesShareSlots guards the shared slots: prefetch and
// background together get at most Concurrency, background at most
// BackgroundConcurrency, and neither starts while foreground waits.
func TestLowerClassesShareSlots(t *testing.T) {
	s := NewScheduler(SchedulerOptions{Concurrency: 3, BackgroundConcurrency: 1})
	ctx := context.Background()
	bg, err := s.Acquire(ctx, "reg", Background, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire(cancelled(), "reg", Background, 1, nil); err == nil {
		t.Fatal("a second background request got a slot: BackgroundConcurrency 1 is not enforced")
	}
	p1, err := s.Acquire(ctx, "reg", Prefetch, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire(cancelled(), "reg", Prefetch, 1, nil); err != nil {
		t.Fatalf("third shared slot refused to a prefetch: %v", err)
	}
	if _, err := s.Acquire(cancelled(), "reg", Prefetch, 1, nil); err == nil {
		t.Fatal("a fourth lower-class request got a slot: the shared limit is not enforced")
	}
	// Foreground in flight counts against the shared slots too.
	bg()
	p1()
	fg, err := s.Acquire(ctx, "reg", Foreground, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	fg2, err := s.Acquire(ctx, "reg", Foreground, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire(cancelled(), "reg", Prefetch, 1, nil); err == nil {
		t.Fatal("a prefetch got a slot with 3 requests in flight")
	}
	fg()
	fg2()
}

// TestDispatchOrder guards dispatch: a freed slot goes to a waiting
// foreground request before a prefetch that waited longer, and a prefetch
// does not start while a foreground request waits.
func TestDispatchOrder(t *testing.T) {
	s := NewScheduler(SchedulerOptions{Concurrency: 1})
	x, err := s.Acquire(context.Background(), "reg", Foreground, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := acquireAsync(s, Prefetch, nil)
	waitQueued(t, s, Prefetch, 1)
	y := acquireAsync(s, Foreground, nil)
	waitQueued(t, s, Foreground, 1)
	x()
	releaseY := granted(t, y, "waiting foreground request")
	notGranted(t, p, "prefetch while a foreground request is in flight")
	releaseY()
	granted(t, p, "prefetch once the registry is free")()
}

// TestLiftRaisesWaitingPrefetch guards the lift: a prefetch that a
// container's read now waits for leaves the prefetch queue for the
// foreground one and starts as soon as a foreground slot is free.
func TestLiftRaisesWaitingPrefetch(t *testing.T) {
	s := NewScheduler(SchedulerOptions{Concurrency: 1})
	ctx := context.Background()
	if _, err := s.Acquire(ctx, "reg", Prefetch, 1, nil); err != nil {
		t.Fatal(err)
	}
	lift := NewLift()
	p := acquireAsync(s, Prefetch, lift)
	waitQueued(t, s, Prefetch, 1)
	notGranted(t, p, "prefetch behind a prefetch")
	lift.Raise()
	lift.Raise() // idempotent
	release := granted(t, p, "lifted prefetch")
	release()
	release() // idempotent
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.slots("reg"); q.inFlight[Foreground] != 0 || len(q.waiting[Prefetch]) != 0 {
		t.Errorf("after release: %d foreground in flight, %d prefetches waiting; want 0, 0", q.inFlight[Foreground], len(q.waiting[Prefetch]))
	}
}

// TestCancelledWaiterLeavesQueue guards the ctx branch: a request whose
// read ended leaves the queue and holds no slot.
func TestCancelledWaiterLeavesQueue(t *testing.T) {
	s := NewScheduler(SchedulerOptions{Concurrency: 1})
	release, err := s.Acquire(context.Background(), "reg", Foreground, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Acquire(ctx, "reg", Foreground, 1, nil)
		done <- err
	}()
	waitQueued(t, s, Foreground, 1)
	cancel()
	if err := <-done; err == nil {
		t.Fatal("cancelled Acquire returned a slot")
	}
	release()
	if _, err := s.Acquire(cancelled(), "reg", Foreground, 1, nil); err != nil {
		t.Fatalf("slot not free after the only holder released and the waiter left: %v", err)
	}
}

// TestPriorityNames guards String's bound: each class has its metric label,
// and a value outside them is "unknown", never an index past the names.
func TestPriorityNames(t *testing.T) {
	for p, want := range map[Priority]string{Foreground: "foreground", Prefetch: "prefetch", Background: "background", -1: "unknown", numPriorities: "unknown"} {
		if got := p.String(); got != want {
			t.Errorf("Priority(%d).String() = %q, want %q", int(p), got, want)
		}
	}
}

// TestBackgroundRate guards pacing: background requests of a registry ask
// for at most BackgroundRate bytes per second; the second request of a
// full second's bytes waits about a second, a lifted one does not.
func TestBackgroundRate(t *testing.T) {
	s := NewScheduler(SchedulerOptions{Concurrency: 4, BackgroundConcurrency: 4, BackgroundRate: 1000})
	if _, err := s.Acquire(cancelled(), "reg", Background, 1000, nil); err != nil {
		t.Fatalf("first background request waited: %v", err)
	}
	if _, err := s.Acquire(cancelled(), "reg", Background, 1, nil); err == nil {
		t.Fatal("second background request started at once: the rate is not enforced")
	}
	lift := NewLift()
	lift.Raise()
	if _, err := s.Acquire(cancelled(), "reg", Background, 1, lift); err != nil {
		t.Fatalf("a lifted background request was paced: %v", err)
	}
	// A nil Scheduler admits everything.
	var none *Scheduler
	if _, err := none.Acquire(cancelled(), "reg", Background, 1<<40, nil); err != nil {
		t.Fatalf("nil Scheduler: %v", err)
	}
}
