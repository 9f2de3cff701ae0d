package remote

import (
	"bytes"
	"context"
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
// whole requests took.
func TestStalledBodyHedged(t *testing.T) {
	f := primed(t, time.Millisecond, 20*time.Millisecond)
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
