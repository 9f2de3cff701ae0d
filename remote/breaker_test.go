package remote

import (
	"net/http"
	"testing"
	"time"
)

func TestBreakerOpensAtThreshold(t *testing.T) {
	o := (Options{BreakerThreshold: 3, BreakerProbeMin: time.Second, BreakerProbeMax: 4 * time.Second}).withDefaults()
	b := newBreaker("h", &o)
	now := time.Now()
	for i := range 2 {
		b.done(now, false, outcomeTransient)
		if ok, _, _, _ := b.allow(now); !ok {
			t.Fatalf("open after %d failures, threshold 3", i+1)
		}
	}
	b.done(now, false, outcomeTransient)
	if ok, _, _, _ := b.allow(now); ok {
		t.Fatal("still closed after 3 failures in a row")
	}
	// The probe slot comes after BreakerProbeMin, one probe at a time.
	if ok, _, at, _ := b.allow(now.Add(999 * time.Millisecond)); ok || !at.Equal(now.Add(time.Second)) {
		t.Fatalf("probe allowed early (next at %v)", at.Sub(now))
	}
	ok, probe, _, _ := b.allow(now.Add(time.Second))
	if !ok || !probe {
		t.Fatal("no probe at its time")
	}
	if ok, _, _, _ := b.allow(now.Add(time.Second)); ok {
		t.Fatal("a second request while the probe is out")
	}
	// A failed probe doubles the interval, up to the maximum.
	b.done(now.Add(time.Second), true, outcomeTransient)
	if ok, _, at, _ := b.allow(now.Add(time.Second)); ok || !at.Equal(now.Add(3*time.Second)) {
		t.Fatalf("next probe at +%v, want +3s", at.Sub(now))
	}
	// A probe the caller cancelled says nothing: the breaker stays open.
	_, probe, _, _ = b.allow(now.Add(3 * time.Second))
	b.done(now.Add(3*time.Second), probe, outcomeUnknown)
	if !b.isOpen() {
		t.Fatal("a cancelled probe closed the breaker")
	}
	_, probe, _, _ = b.allow(now.Add(3 * time.Second))
	if !probe {
		t.Fatal("no probe after a cancelled one")
	}
	b.done(now.Add(3*time.Second), true, outcomeUp)
	if b.isOpen() {
		t.Fatal("open after a successful probe")
	}
}

func TestBreakerSuccessResetsCount(t *testing.T) {
	o := (Options{BreakerThreshold: 2}).withDefaults()
	b := newBreaker("h", &o)
	now := time.Now()
	b.done(now, false, outcomeTransient)
	b.done(now, false, outcomeUp) // a 404 says the host is up
	b.done(now, false, outcomeTransient)
	if b.isOpen() {
		t.Fatal("failures not in a row opened the breaker")
	}
}

func TestBreakerWakesWaiters(t *testing.T) {
	o := (Options{BreakerThreshold: 1}).withDefaults()
	b := newBreaker("h", &o)
	now := time.Now()
	b.done(now, false, outcomeTransient)
	_, _, _, changed := b.allow(now)
	b.done(now, false, outcomeUp) // a request sent before it opened
	select {
	case <-changed:
	default:
		t.Fatal("closing did not wake the waiters")
	}
}

func TestBackoffBounds(t *testing.T) {
	o := (Options{BackoffMin: 10 * time.Millisecond, BackoffMax: 80 * time.Millisecond}).withDefaults()
	for n, ceil := range []time.Duration{10, 20, 40, 80, 80, 80} {
		for range 200 {
			if d := backoff(&o, n); d <= 0 || d > ceil*time.Millisecond {
				t.Fatalf("backoff(%d) = %v, want in (0, %v]", n, d, ceil*time.Millisecond)
			}
		}
	}
	if d := backoff(&o, 1000); d <= 0 || d > o.BackoffMax {
		t.Fatalf("backoff(1000) = %v", d)
	}
	// The jitter's edges: a bound of 1 ns leaves exactly 1 ns.
	tiny := Options{BackoffMin: 1, BackoffMax: 1}
	if d := backoff(&tiny, 0); d != 1 {
		t.Errorf("backoff(0) with bounds of 1 ns = %v, want 1ns", d)
	}
	// A long minimum is never shifted past int64 (which would make the
	// bound negative): from the 30th backoff on, the maximum is used.
	long := Options{BackoffMin: 10 * time.Second, BackoffMax: time.Minute}
	for _, n := range []int{29, 30, 31, 62, 63, 64} {
		if d := backoff(&long, n); d <= 0 || d > long.BackoffMax {
			t.Errorf("backoff(%d) with a 10 s minimum = %v, want in (0, %v]", n, d, long.BackoffMax)
		}
	}
}

// TestRetryWaitBounds pins which backoff each retry waits: none before
// the first retry (after a 429, the first backoff), then the first
// backoff before the second, the second before the third.
func TestRetryWaitBounds(t *testing.T) {
	o := (Options{BackoffMin: 10 * time.Millisecond, BackoffMax: time.Second}).withDefaults()
	for _, tc := range []struct {
		n     int
		cause string
		ceil  time.Duration
	}{
		{0, reason5xx, 0},
		{0, reason429, 10 * time.Millisecond},
		{1, reason5xx, 10 * time.Millisecond},
		{2, reason5xx, 20 * time.Millisecond},
		{3, reason429, 40 * time.Millisecond},
	} {
		for range 200 {
			d := retryWait(&o, tc.n, tc.cause)
			if tc.ceil == 0 && d != 0 || tc.ceil > 0 && (d <= 0 || d > tc.ceil) {
				t.Fatalf("retryWait(%d, %s) = %v, want in (0, %v] (0: none)", tc.n, tc.cause, d, tc.ceil)
			}
		}
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		"-1":                            0,
		"soon":                          0,
		"Mon, 07 Dec 2026 12:00:05 GMT": 5 * time.Second,
		"Mon, 07 Dec 2026 11:59:00 GMT": 0,
	} {
		if got := retryAfter(http.Header{"Retry-After": {v}}, now); got != want {
			t.Errorf("Retry-After %q = %v, want %v", v, got, want)
		}
	}
}

func TestHedgeDelayFollowsLatency(t *testing.T) {
	o := (Options{HedgeMin: 10 * time.Millisecond, HedgeMax: time.Second, HedgeFactor: 2}).withDefaults()
	var l latency
	for range minLatencySamples - 1 {
		l.observe(20*time.Millisecond, 50*time.Millisecond)
	}
	if d := l.hedgeDelays(&o); d != (hedgeDelays{time.Second, time.Second}) {
		t.Fatalf("with too few samples: %+v, want HedgeMax", d)
	}
	l.observe(20*time.Millisecond, 50*time.Millisecond)
	if d := l.hedgeDelays(&o); d != (hedgeDelays{40 * time.Millisecond, 100 * time.Millisecond}) {
		t.Fatalf("hedge delays %+v, want 2 × 20 ms to an answer, 2 × 50 ms in all", d)
	}
	// The 90th percentile, not the mean nor the maximum: 6 slow
	// answers in 64 are not enough to move it, 7 are (the 7th replaces
	// the oldest, a fast one).
	for i := range latencySamples {
		d := time.Millisecond
		if i >= latencySamples-6 {
			d = 100 * time.Millisecond
		}
		l.observe(d, 8*time.Millisecond)
	}
	if d := l.hedgeDelays(&o); d != (hedgeDelays{10 * time.Millisecond, 16 * time.Millisecond}) {
		t.Fatalf("hedge delays %+v, want HedgeMin to an answer, 2 × 8 ms in all", d)
	}
	l.observe(100*time.Millisecond, 8*time.Millisecond)
	if d := l.hedgeDelays(&o); d.answer != 200*time.Millisecond || d.full != 200*time.Millisecond {
		t.Fatalf("hedge delays %+v, want 2 × 100 ms for both (never less in all than to an answer)", d)
	}
	for range latencySamples {
		l.observe(time.Second, time.Second)
	}
	if d := l.hedgeDelays(&o); d != (hedgeDelays{time.Second, time.Second}) {
		t.Fatalf("hedge delays %+v, want HedgeMax", d)
	}
}
