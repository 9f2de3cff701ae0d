package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// TestProofRate guards the proof's rate limit with a fake clock: reading
// 10 KiB at 1 KiB/s takes 10 s of the clock (the reader sleeps what it is
// ahead), never more than 1 KiB per read, and a rate of 0 is no limit.
func TestProofRate(t *testing.T) {
	origin := time.Unix(1_800_000_000, 0)
	clock := origin
	l := &rateReader{
		ctx: context.Background(), r: bytes.NewReader(make([]byte, 10<<10)), rate: 1 << 10,
		now:   func() time.Time { return clock },
		sleep: func(_ context.Context, d time.Duration) error { clock = clock.Add(d); return nil },
	}
	buf := make([]byte, 4<<10)
	var total int
	for {
		n, err := l.Read(buf)
		if n > 1<<10 {
			t.Fatalf("one read of %d bytes at 1 KiB/s", n)
		}
		total += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if elapsed := clock.Sub(origin); total != 10<<10 || elapsed != 10*time.Second {
		t.Errorf("read %d bytes in %v of the clock, want 10240 in 10s", total, elapsed)
	}
	r := bytes.NewReader(nil)
	if got := limitRate(context.Background(), r, 0); got != io.Reader(r) {
		t.Error("rate 0 wraps the reader")
	}
}

// fakeYielder records the yields of a proof's stream; each takes wait of
// the clock.
type fakeYielder struct {
	calls    int
	registry string
	err      error
	clock    *time.Time
	wait     time.Duration
}

func (f *fakeYielder) YieldToForeground(ctx context.Context, registry string, quiet, max time.Duration) error {
	f.calls++
	f.registry = registry
	if quiet != proofYieldQuiet || max != proofYieldMax {
		return fmt.Errorf("yield with quiet %v, max %v", quiet, max)
	}
	if f.clock != nil {
		*f.clock = f.clock.Add(f.wait)
	}
	return f.err
}

// TestProofYieldsBeforeEveryRead guards that a proof's stream stands aside
// for container reads before each read of the blob, on the mount's
// registry, and stops when the yield ends with its context.
func TestProofYieldsBeforeEveryRead(t *testing.T) {
	y := &fakeYielder{}
	r := &yieldReader{ctx: context.Background(), r: strings.NewReader("abcdef"), sched: y, registry: "reg.example"}
	buf := make([]byte, 2)
	for i := 1; i <= 3; i++ {
		if n, err := r.Read(buf); n != 2 || err != nil {
			t.Fatalf("read %d: %d, %v", i, n, err)
		}
		if y.calls != i || y.registry != "reg.example" {
			t.Fatalf("after %d reads: %d yields to %q", i, y.calls, y.registry)
		}
	}
	y.err = context.Canceled
	r = &yieldReader{ctx: context.Background(), r: strings.NewReader("abcdef"), sched: y, registry: "reg.example"}
	if n, err := r.Read(buf); n != 0 || !errors.Is(err, context.Canceled) {
		t.Errorf("yield ended with ctx: read %d, %v; want 0, context.Canceled", n, err)
	}
}

// TestProofAdvancesUnderSustainedReads guards the proof's progress on a
// node whose containers never stop reading: a yield that lasted the whole
// proofYieldMax grants proofYieldGrant bytes read without yielding; one
// that ended sooner grants nothing.
func TestProofAdvancesUnderSustainedReads(t *testing.T) {
	clock := time.Unix(1_800_000_000, 0)
	y := &fakeYielder{clock: &clock, wait: proofYieldMax}
	r := &yieldReader{ctx: context.Background(), r: bytes.NewReader(make([]byte, 3*proofYieldGrant)), sched: y, now: func() time.Time { return clock }}
	buf := make([]byte, 1<<20)
	for read := int64(0); read < proofYieldGrant; {
		n, err := r.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		read += int64(n)
	}
	if y.calls != 1 {
		t.Errorf("%d yields for the first %d bytes after a full yield, want 1", y.calls, proofYieldGrant)
	}
	if _, err := r.Read(buf); err != nil || y.calls != 2 {
		t.Errorf("past the grant: %d yields (%v), want 2", y.calls, err)
	}
	y.wait = proofYieldMax - time.Millisecond // the reads stopped: no grant
	y.calls = 0
	r.granted = 0
	for i := 1; i <= 3; i++ {
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if y.calls != 3 {
		t.Errorf("%d yields for 3 reads after yields shorter than the max, want 3", y.calls)
	}
}
