package remote

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/log/logtest"
	"github.com/lazyfs/lazyfs/internal/faultproxy"
	"github.com/lazyfs/lazyfs/metrics"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// primed is a fixture whose host has a history of requests answered
// after answer and done after full.
func primed(t *testing.T, answer, full time.Duration) *faultFixture {
	t.Helper()
	f := startFaulty(t, faultproxy.Options{Seed: 1}, Options{ReadTimeout: 3 * time.Second, HedgeMin: time.Millisecond, HedgeMax: time.Minute})
	for range minLatencySamples {
		f.b.resolver.latencyOf(f.proxy.Addr()).observe(answer, full)
	}
	return f
}

// readChecked reads 4 KiB at 0 and fails the test unless they are the
// blob's; it returns the hedges fired and won meanwhile.
func (f *faultFixture) readChecked(t *testing.T) (fired, won float64) {
	t.Helper()
	ctx := logtest.WithT(context.Background(), t)
	host := f.proxy.Addr()
	fired0 := testutil.ToFloat64(metrics.RegistryHedgesFired.WithLabelValues(host))
	won0 := testutil.ToFloat64(metrics.RegistryHedgesWon.WithLabelValues(host))
	buf := make([]byte, 4096)
	if _, err := f.b.ReadAt(ctx, buf, 0); err != nil || !bytes.Equal(buf, f.blob[:4096]) {
		t.Fatalf("read: %v (%+v)", err, f.proxy.Counters())
	}
	return testutil.ToFloat64(metrics.RegistryHedgesFired.WithLabelValues(host)) - fired0,
		testutil.ToFloat64(metrics.RegistryHedgesWon.WithLabelValues(host)) - won0
}

// A request not answered within the time recent requests took to be
// answered is hedged then, not after the time whole requests took: the
// whole-request delay (15 s here) is past the read's deadline (3 s).
func TestHedgeOnAnswerDelay(t *testing.T) {
	f := primed(t, time.Millisecond, 10*time.Second)
	f.proxy.SetFaults(faultproxy.Faults{StallFor: time.Minute})
	f.proxy.Script(faultproxy.Stall)
	// A hedge not answered within 1.5 ms on a busy machine gets a hedge
	// of its own: at least one, not exactly one.
	if fired, won := f.readChecked(t); fired < 1 || won != 1 {
		t.Fatalf("%v hedges fired, %v won; want at least 1, and 1", fired, won)
	}
}

// Once answered, a request whose body is on its way is given the time
// whole requests took, not raced at the (much shorter) answer delay.
func TestAnsweredRequestNotHedgedEarly(t *testing.T) {
	// Answers in 200 ms (a hedge after 300 ms: time enough for a loopback
	// answer on a busy machine), whole requests in 10 s; the body comes
	// a second after the answer.
	f := primed(t, 200*time.Millisecond, 10*time.Second)
	f.proxy.SetFaults(faultproxy.Faults{StallFor: time.Second})
	f.proxy.Script(faultproxy.StallBody)
	if fired, _ := f.readChecked(t); fired != 0 {
		t.Fatalf("%v hedges fired for a body 1 s late, whole requests taking 10 s", fired)
	}
	if c := f.proxy.Counters(); c.BodyStalls != 1 {
		t.Fatalf("%d body stalls, want 1", c.BodyStalls)
	}
}

// A body that stalls after its answer is still raced, after the time
// whole requests took. The answer delay (300 ms) leaves the first request
// time to be answered on a busy machine: a hedge fired before the answer
// could reach the proxy first and take the scripted stall, and the first
// request would then win.
func TestStalledBodyHedged(t *testing.T) {
	f := primed(t, 200*time.Millisecond, 200*time.Millisecond)
	f.proxy.SetFaults(faultproxy.Faults{StallFor: time.Minute})
	f.proxy.Script(faultproxy.StallBody)
	if fired, won := f.readChecked(t); fired < 1 || won != 1 {
		t.Fatalf("%v hedges fired, %v won; want at least 1, and 1", fired, won)
	}
}

// A body that keeps coming is not raced, however long it takes: on a full
// link a second request would only halve what each gets and double what
// the registry sends. A body that stops is (TestStalledBodyHedged).
func TestFlowingBodyNotHedged(t *testing.T) {
	var lat latency
	var attempts atomic.Int32
	p := make([]byte, 8)
	err := hedged(context.Background(), "flowing.test", p, hedgeDelays{answer: 50 * time.Millisecond, full: 500 * time.Millisecond}, 2, &lat,
		func(ctx context.Context, buf []byte, progress func()) error {
			attempts.Add(1)
			// Three times the whole-request delay, a byte every
			// millisecond.
			for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); {
				progress()
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Millisecond):
				}
			}
			copy(buf, "complete")
			return nil
		})
	if err != nil || string(p) != "complete" {
		t.Fatalf("hedged: %v, %q", err, p)
	}
	if n := attempts.Load(); n != 1 {
		t.Fatalf("%d attempts for a body that kept coming, want 1", n)
	}
}

// A body that stops after an answer is raced once it has been quiet for the
// whole-request delay, not before.
func TestStoppedBodyRacedAfterQuiet(t *testing.T) {
	var lat latency
	var attempts atomic.Int32
	p := make([]byte, 8)
	start := time.Now()
	var raced time.Duration
	err := hedged(context.Background(), "stopped.test", p, hedgeDelays{answer: 10 * time.Millisecond, full: 200 * time.Millisecond}, 1, &lat,
		func(ctx context.Context, buf []byte, progress func()) error {
			if attempts.Add(1) == 1 {
				progress()
				<-ctx.Done() // answered, then nothing more
				return ctx.Err()
			}
			raced = time.Since(start)
			copy(buf, "complete")
			return nil
		})
	if err != nil || string(p) != "complete" {
		t.Fatalf("hedged: %v, %q", err, p)
	}
	if raced < 200*time.Millisecond {
		t.Fatalf("raced after %v, before the body had been quiet for 200 ms", raced)
	}
}

// TestHedgeRecordsTimeToAnswer guards what the hedge delays learn from: a
// request that reports its answer is recorded with the time to that
// answer apart from its whole duration (a body takes longer than its
// answer), and one that never reports it (a HEAD) with its whole
// duration for both.
func TestHedgeRecordsTimeToAnswer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer bool
	}{{"answered before the body", true}, {"no separate answer", false}} {
		t.Run(tc.name, func(t *testing.T) {
			var lat latency
			err := hedged(context.Background(), "h", make([]byte, 1), hedgeDelays{time.Minute, time.Minute}, 0, &lat,
				func(_ context.Context, _ []byte, answered func()) error {
					if tc.answer {
						answered()
					}
					time.Sleep(time.Millisecond) // the body's transfer
					return nil
				})
			if err != nil {
				t.Fatal(err)
			}
			firstByte, full := lat.firstByte.ring[0], lat.full.ring[0]
			if lat.full.n != 1 || full < time.Millisecond {
				t.Fatalf("%d samples, whole request %v; want 1 of at least 1ms", lat.full.n, full)
			}
			if tc.answer && !(firstByte > 0 && firstByte < full) {
				t.Errorf("answered after %v of a %v request; want the time to the answer, before the body", firstByte, full)
			}
			if !tc.answer && firstByte != full {
				t.Errorf("answered after %v of a %v request; want the whole request", firstByte, full)
			}
		})
	}
}

// TestHedgeAttemptBounds guards the hedging bounds on a host that never
// answers: at most maxHedges+1 attempts race (the oldest is given up only
// when one more would exceed that), the delay doubles with each attempt
// given up, and no more than 2×(maxHedges+1) are sent in all, however
// long the read may wait.
func TestHedgeAttemptBounds(t *testing.T) {
	const maxHedges = 1
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var ctxs []context.Context
	var running [][]int // for each attempt, the attempts still running when it started
	var starts []time.Time
	started := make(chan int, 10)
	done := make(chan error, 1)
	go func() {
		done <- hedged(ctx, "h", make([]byte, 1), hedgeDelays{time.Millisecond, time.Millisecond}, maxHedges, &latency{},
			func(actx context.Context, _ []byte, _ func()) error {
				mu.Lock()
				var live []int
				for i, c := range ctxs {
					if c.Err() == nil {
						live = append(live, i)
					}
				}
				ctxs, running, starts = append(ctxs, actx), append(running, live), append(starts, time.Now())
				started <- len(ctxs)
				mu.Unlock()
				<-actx.Done() // stalled for good
				return actx.Err()
			})
	}()
	const want = 2 * (maxHedges + 1)
	deadline := time.After(10 * time.Second)
	for n := 0; n < want; {
		select {
		case n = <-started:
		case <-deadline:
			t.Fatalf("%d attempts after 10 s, want %d", n, want)
		}
	}
	// The delays are 1, 1, 2 and 4 ms: an attempt past the bound would
	// come within a few ms of the last; 100 ms leave room for a busy
	// machine.
	select {
	case n := <-started:
		t.Errorf("attempt %d started, want %d in all", n, want)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("hedged succeeded without an answer")
	}
	mu.Lock()
	defer mu.Unlock()
	// Attempt 1 races attempt 0; attempt 2 replaces attempt 0, 3 replaces 1.
	for i, want := range [][]int{nil, {0}, {1}, {2}} {
		if !slices.Equal(running[i], want) {
			t.Errorf("attempt %d started while attempts %v ran, want %v", i, running[i], want)
		}
	}
	// Timers never fire early: each gap is at least its delay.
	for i, least := range []time.Duration{time.Millisecond, time.Millisecond, 2 * time.Millisecond} {
		if gap := starts[i+1].Sub(starts[i]); gap < least {
			t.Errorf("attempt %d started %v after attempt %d, want at least %v", i+1, gap, i, least)
		}
	}
}
