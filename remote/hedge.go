package remote

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/lazyfs/lazyfs/metrics"
)

// latencySamples is how many recent successful requests of a host the
// hedge delay is derived from.
const latencySamples = 64

// minLatencySamples is how many samples a host needs before its hedge
// delay follows them; until then HedgeMax is used.
const minLatencySamples = 4

// latency keeps the durations of a host's recent successful requests.
type latency struct {
	mu   sync.Mutex
	ring [latencySamples]time.Duration
	n    int // samples stored, up to latencySamples
	next int
}

func (l *latency) observe(d time.Duration) {
	l.mu.Lock()
	l.ring[l.next] = d
	l.next = (l.next + 1) % latencySamples
	l.n = min(l.n+1, latencySamples)
	l.mu.Unlock()
}

// hedgeDelay is how long a request may take before a second one races it:
// HedgeFactor times the 90th percentile of recent requests, within
// [HedgeMin, HedgeMax]. A request slower than nearly all recent ones is
// likely stalled (a lost packet, a slow backend), and a fresh one is then
// usually faster than waiting.
func (l *latency) hedgeDelay(o *Options) time.Duration {
	l.mu.Lock()
	if l.n < minLatencySamples {
		l.mu.Unlock()
		return o.HedgeMax
	}
	s := slices.Clone(l.ring[:l.n])
	l.mu.Unlock()
	slices.Sort(s)
	p90 := s[(len(s)*9)/10]
	return min(max(time.Duration(o.HedgeFactor*float64(p90)), o.HedgeMin), o.HedgeMax)
}

// hedged runs try (with a buffer of len(p) bytes to fill) and, each time
// delay passes without an answer, starts one more, all racing: up to
// 1+maxHedges at once. When that many are out and the delay passes again,
// the oldest is given up (cancelled) and replaced, with the delay doubled
// each time, up to maxAttempts attempts in all: a request stalled for good
// is not waited on until the read's deadline. The first success wins: its
// bytes end up in p, every other attempt is cancelled and waited for. It
// returns when one succeeded, every attempt failed (the first failure is
// returned), or ctx ended. A failure while no other attempt is in flight
// returns at once: retrying is the caller's job, after a backoff.
func hedged(ctx context.Context, host string, p []byte, delay time.Duration, maxHedges int,
	lat *latency, try func(ctx context.Context, buf []byte) error) error {
	type result struct {
		i   int
		buf []byte
		err error
		d   time.Duration
	}
	maxAttempts := 2 * (maxHedges + 1)
	results := make(chan result, maxAttempts)
	var cancels []context.CancelFunc
	var done, givenUp []bool
	launch := func(buf []byte) {
		i := len(cancels)
		actx, cancel := context.WithCancel(ctx)
		cancels, done, givenUp = append(cancels, cancel), append(done, false), append(givenUp, false)
		go func() {
			start := time.Now()
			err := try(actx, buf)
			results <- result{i, buf, err, time.Since(start)}
		}()
	}
	launch(p)
	inflight := 1
	timer := time.NewTimer(delay)
	defer timer.Stop()

	var firstErr error
	winner := -1
	var won []byte
wait:
	for inflight > 0 {
		select {
		case r := <-results:
			inflight--
			done[r.i] = true
			if r.err == nil {
				winner, won = r.i, r.buf
				lat.observe(r.d)
				break wait
			}
			if firstErr == nil && !givenUp[r.i] {
				firstErr = r.err
			}
		case <-timer.C:
			if len(cancels) >= maxAttempts || maxHedges == 0 {
				continue
			}
			if inflight > maxHedges {
				// The oldest still out has waited several delays.
				for i := range cancels {
					if !done[i] && !givenUp[i] {
						givenUp[i] = true
						cancels[i]()
						break
					}
				}
				delay *= 2
			}
			metrics.RegistryHedgesFired.WithLabelValues(host).Inc()
			launch(make([]byte, len(p)))
			inflight++
			timer.Reset(delay)
		case <-ctx.Done():
			break wait
		}
	}
	// Every attempt ends before p is touched again or returned: the
	// first one writes into p itself.
	for _, c := range cancels {
		c()
	}
	for ; inflight > 0; inflight-- {
		if r := <-results; r.err != nil && firstErr == nil && !givenUp[r.i] {
			firstErr = r.err
		}
	}
	switch {
	case winner == 0:
		return nil
	case winner > 0:
		copy(p, won)
		metrics.RegistryHedgesWon.WithLabelValues(host).Inc()
		return nil
	case firstErr != nil:
		return firstErr
	default:
		return ctx.Err()
	}
}
