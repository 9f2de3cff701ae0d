package remote

import (
	"sync"
	"time"

	"github.com/lazyfs/lazyfs/metrics"
)

// breaker is the circuit breaker of one registry host. After
// BreakerThreshold transient failures in a row it opens: requests to the
// host are no longer sent, except one probe at a time, at intervals that
// double from BreakerProbeMin up to BreakerProbeMax. The first success
// closes it and wakes everything waiting for it. A node whose registry is
// down so sends a few requests a second at most, instead of one per read
// and retry, and its readers learn of the registry's return within one
// probe interval.
type breaker struct {
	host string
	opts *Options

	mu        sync.Mutex
	failures  int  // transient failures in a row
	open      bool // requests are held back
	probing   bool // a probe is in flight
	nextProbe time.Time
	interval  time.Duration
	changed   chan struct{} // closed and replaced when the breaker closes or a probe ends
}

func newBreaker(host string, opts *Options) *breaker {
	metrics.RegistryCircuitState.WithLabelValues(host).Set(0)
	return &breaker{host: host, opts: opts, changed: make(chan struct{})}
}

// allow reports whether a request may be sent now, and whether it is the
// open breaker's probe (whose outcome must be reported with done). When
// it may not, it returns when that may change: the next probe's time, and
// a channel closed when the breaker closes or a probe ends.
func (b *breaker) allow(now time.Time) (ok, probe bool, retryAt time.Time, changed <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return true, false, time.Time{}, nil
	}
	if !b.probing && !now.Before(b.nextProbe) {
		b.probing = true
		return true, true, time.Time{}, nil
	}
	at := b.nextProbe
	if b.probing {
		// The probe's end (or the interval after it) comes first.
		at = now.Add(b.interval)
	}
	return false, false, at, b.changed
}

// Outcomes of a request, for the breaker.
const (
	outcomeUp        = iota // an answer: success, or a failure that says the host is up (a 404)
	outcomeTransient        // a failure that says it may be down (reset, 5xx, stall)
	outcomeUnknown          // cancelled by its caller: says nothing
)

// done reports the outcome of a request allow let through.
func (b *breaker) done(now time.Time, probe bool, outcome int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	wake := probe
	if probe {
		b.probing = false
	}
	defer func() {
		if wake {
			b.wake()
		}
	}()
	if outcome == outcomeUnknown {
		return
	}
	transient := outcome == outcomeTransient
	if !transient {
		b.failures = 0
		if b.open {
			b.open, wake = false, true
			metrics.RegistryCircuitState.WithLabelValues(b.host).Set(0)
		}
		return
	}
	b.failures++
	switch {
	case probe:
		b.interval = min(2*b.interval, b.opts.BreakerProbeMax)
		b.nextProbe = now.Add(b.interval)
	case !b.open && b.failures >= b.opts.BreakerThreshold:
		b.open = true
		b.interval = b.opts.BreakerProbeMin
		b.nextProbe = now.Add(b.interval)
		metrics.RegistryCircuitState.WithLabelValues(b.host).Set(1)
		metrics.RegistryCircuitOpens.WithLabelValues(b.host).Inc()
	}
}

// isOpen reports whether the breaker holds requests back.
func (b *breaker) isOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}

func (b *breaker) wake() {
	close(b.changed)
	b.changed = make(chan struct{})
}
