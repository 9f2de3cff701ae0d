package worker

import (
	"context"
	"io"
	"time"
)

// rateReader bounds how fast a proof reads its blob ([fetch] background_rate):
// a proof is background work, and a node pulling many images must keep
// bandwidth for the reads containers wait on. The stream is one long
// request, so it is paced here rather than through the chunk scheduler's
// per-request slots (which would hold a slot for the whole download).
type rateReader struct {
	ctx   context.Context
	r     io.Reader
	rate  int64 // bytes per second, > 0
	start time.Time
	read  int64
	// now and sleep are time.Now and a ctx-aware sleep; tests replace them.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

// limitRate returns r read at most rate bytes per second on average; rate
// <= 0 returns r as is.
func limitRate(ctx context.Context, r io.Reader, rate int64) io.Reader {
	if rate <= 0 {
		return r
	}
	return &rateReader{ctx: ctx, r: r, rate: rate, now: time.Now, sleep: sleepCtx}
}

func (l *rateReader) Read(p []byte) (int, error) {
	if l.start.IsZero() {
		l.start = l.now()
	}
	// At most one second's worth per read, so the pace is even.
	if int64(len(p)) > l.rate {
		p = p[:l.rate]
	}
	n, err := l.r.Read(p)
	l.read += int64(n)
	// Where the reader should be by now at rate: wait until it is.
	due := l.start.Add(time.Duration(float64(l.read) / float64(l.rate) * float64(time.Second)))
	if wait := due.Sub(l.now()); wait > 0 {
		if serr := l.sleep(l.ctx, wait); serr != nil && err == nil {
			err = serr
		}
	}
	return n, err
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Between two reads of a proof's stream, the proof stands aside while reads
// a container waits on run against the same registry, until
// proofYieldQuiet after the last one, at most proofYieldMax at a time;
// after standing aside that long it reads proofYieldGrant bytes before it
// yields again, so that a proof still advances (at a few MiB/s) on a node
// whose containers read without pause.
const (
	proofYieldQuiet = 100 * time.Millisecond
	proofYieldMax   = time.Second
	proofYieldGrant = 4 << 20
)

// yielder is the part of the chunk scheduler a proof yields through.
type yielder interface {
	YieldToForeground(ctx context.Context, registry string, quiet, max time.Duration) error
}

// yieldReader reads r, first yielding to foreground reads (see above).
type yieldReader struct {
	ctx      context.Context
	r        io.Reader
	sched    yielder
	registry string
	// granted is what may still be read without yielding; now is
	// time.Now (tests replace it).
	granted int64
	now     func() time.Time
}

func (y *yieldReader) Read(p []byte) (int, error) {
	if err := y.wait(); err != nil {
		return 0, err
	}
	n, err := y.r.Read(p)
	y.granted -= int64(n)
	return n, err
}

// wait stands aside while the worker's containers read (unless the stream
// was granted bytes after a whole proofYieldMax aside). The proof calls it
// also before decoding and hashing what it read (chunkCacher), its longest
// stretches of CPU: a stream that only stops reading would still take the
// cores from a read that began meanwhile.
func (y *yieldReader) wait() error {
	if y.granted <= 0 {
		now := time.Now
		if y.now != nil {
			now = y.now
		}
		start := now()
		if err := y.sched.YieldToForeground(y.ctx, y.registry, proofYieldQuiet, proofYieldMax); err != nil {
			return err
		}
		if now().Sub(start) >= proofYieldMax {
			y.granted = proofYieldGrant
		}
	}
	return nil
}
