package chunks

import (
	"context"
	"time"

	"github.com/lazyfs/lazyfs/metrics"
)

// yieldPoll is how often a background stream that yields looks again
// whether reads still run.
const yieldPoll = 5 * time.Millisecond

// YieldToForeground waits while reads a container waits on run against
// registry: from while one is in flight or waiting for a slot until quiet
// after the last one ended, at most max in all (so that a node read
// without pause still advances its background work), or until ctx ends.
//
// It is for background work that holds no slot, such as a layer's proof,
// which streams the whole blob: slots keep background requests from being
// sent ahead of reads, but once sent they compete with the reads for the
// link, the CPU that decompresses and hashes, and the disk cache. A stream
// that calls this between its reads stands aside instead. A nil Scheduler
// never waits.
func (s *Scheduler) YieldToForeground(ctx context.Context, registry string, quiet, max time.Duration) error {
	if s == nil {
		return nil
	}
	start := time.Now()
	defer func() {
		if waited := time.Since(start); waited >= yieldPoll {
			metrics.BackgroundYield.Add(waited.Seconds())
		}
	}()
	for {
		s.mu.Lock()
		q := s.slots(registry)
		busy := q.inFlight[Foreground] > 0 || len(q.waiting[Foreground]) > 0 || q.reading > 0
		idle := time.Since(q.lastForeground)
		s.mu.Unlock()
		var wait time.Duration
		switch {
		case busy:
			wait = yieldPoll
		case idle < quiet:
			wait = quiet - idle
		default:
			return nil
		}
		left := max - time.Since(start)
		if left <= 0 {
			return nil
		}
		t := time.NewTimer(min(wait, left))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// ReadStarted marks a read a container waits on, which the memory tier
// could not serve, as running against registry until the returned func is
// called (then the quiet period starts). YieldToForeground waits for it
// like for a foreground request: such a read may be served from the disk
// cache or wait for a prefetch, and so make no foreground request at all,
// yet it wants the CPU (decompressing, hashing) that a proof would take.
// Without this, a proof that had cached the chunks a read was about to
// need saw no reads and stopped standing aside for them. A nil Scheduler
// marks nothing.
func (s *Scheduler) ReadStarted(registry string) (done func()) {
	if s == nil {
		return func() {}
	}
	s.mu.Lock()
	s.slots(registry).reading++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		q := s.slots(registry)
		q.reading--
		q.lastForeground = time.Now()
		s.mu.Unlock()
	}
}
