package remote

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lazyfs/lazyfs/metrics"
)

// latencySamples is how many recent successful requests of a host the
// hedge delays are derived from.
const latencySamples = 64

// minLatencySamples is how many samples a host needs before its hedge
// delays follow them; until then HedgeMax is used.
const minLatencySamples = 4

// latency keeps a host's recent successful requests: how long each took
// to be answered (status and headers: the server's time to first byte)
// and how long in all, body included.
//
// The two are kept apart because a stall almost always comes before the
// answer (a lost packet, a backend that does not respond, a queue), and
// the time to an answer does not grow with the size of the range asked
// for: a request of 4 KiB and one of 4 MiB are answered equally fast, so
// a deadline on the answer can be tight where one on the whole request
// must allow for the largest body.
type latency struct {
	mu              sync.Mutex
	firstByte, full samples
}

// samples is a ring of the latest latencySamples durations.
type samples struct {
	ring [latencySamples]time.Duration
	n    int // samples stored, up to latencySamples
	next int
}

func (s *samples) add(d time.Duration) {
	s.ring[s.next] = d
	s.next = (s.next + 1) % latencySamples
	s.n = min(s.n+1, latencySamples)
}

// p90 is the 90th percentile of the samples.
func (s *samples) p90() time.Duration {
	v := slices.Clone(s.ring[:s.n])
	slices.Sort(v)
	return v[(len(v)*9)/10]
}

// observe records a successful request answered after firstByte and done
// after full.
func (l *latency) observe(firstByte, full time.Duration) {
	l.mu.Lock()
	l.firstByte.add(firstByte)
	l.full.add(full)
	l.mu.Unlock()
}

// hedgeDelays are how long an attempt may go before a second one races
// it: without an answer (answer), and in all once answered (full).
type hedgeDelays struct {
	answer, full time.Duration
}

// hedgeDelays derives the hedge delays from the host's recent requests:
// HedgeFactor times the 90th percentile of their time to an answer, and
// of their whole duration, each within [HedgeMin, HedgeMax]. A request
// slower than nearly all recent ones is likely stalled, and a fresh one
// is then usually faster than waiting.
func (l *latency) hedgeDelays(o *Options) hedgeDelays {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.full.n < minLatencySamples {
		return hedgeDelays{o.HedgeMax, o.HedgeMax}
	}
	bound := func(p90 time.Duration) time.Duration {
		return min(max(time.Duration(o.HedgeFactor*float64(p90)), o.HedgeMin), o.HedgeMax)
	}
	answer := bound(l.firstByte.p90())
	return hedgeDelays{answer: answer, full: max(bound(l.full.p90()), answer)}
}

// hedged runs try (with a buffer of len(p) bytes to fill) and, each time
// an attempt goes past its delay, starts one more, all racing: up to
// 1+maxHedges at once. The newest attempt's delay is delays.answer from
// its start until try reports progress (calling progress: the server
// answered, then each time body bytes arrive); from then on it is raced
// only when its body stops: when no byte came for delays.full. A body that
// keeps coming is not raced however long it takes, because on a link that
// is full (many ranges at once over a capped line) a second request only
// halves what each gets and doubles the bytes the registry sends; a
// request stalled for good still ends at RequestTimeout. When that many
// are out and the delay passes again, the oldest is given up (cancelled)
// and replaced, with the delays doubled each time, up to 2×(maxHedges+1)
// attempts in all: a request stalled for good is not waited on until the
// read's deadline. The first success wins: its bytes end up in p, every
// other attempt is cancelled and waited for. It returns when one
// succeeded, every attempt failed (the first failure is returned), or ctx
// ended. A failure while no other attempt is in flight returns at once:
// retrying is the caller's job.
func hedged(ctx context.Context, host string, p []byte, delays hedgeDelays, maxHedges int,
	lat *latency, try func(ctx context.Context, buf []byte, progress func()) error) error {
	type result struct {
		i            int
		buf          []byte
		err          error
		firstByte, d time.Duration
	}
	maxAttempts := 2 * (maxHedges + 1)
	results := make(chan result, maxAttempts)
	answers := make(chan int, maxAttempts) // one send at most per attempt: never blocks
	var cancels []context.CancelFunc
	var lastProgress []*atomic.Int64 // unix nanoseconds; 0 until answered
	var done, givenUp []bool
	launch := func(buf []byte) {
		i := len(cancels)
		actx, cancel := context.WithCancel(ctx)
		start := time.Now()
		last := new(atomic.Int64)
		cancels, lastProgress = append(cancels, cancel), append(lastProgress, last)
		done, givenUp = append(done, false), append(givenUp, false)
		go func() {
			var firstByte time.Duration
			err := try(actx, buf, func() {
				now := time.Now()
				last.Store(now.UnixNano())
				if firstByte == 0 {
					firstByte = max(now.Sub(start), 1)
					answers <- i
				}
			})
			d := time.Since(start)
			if firstByte == 0 {
				// No separate answer (a HEAD): the whole request was it.
				firstByte = d
			}
			results <- result{i, buf, err, firstByte, d}
		}()
	}
	launch(p)
	inflight := 1
	scale := time.Duration(1) // doubles with each attempt given up
	timer := time.NewTimer(delays.answer)
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
				lat.observe(r.firstByte, r.d)
				break wait
			}
			if firstErr == nil && !givenUp[r.i] {
				firstErr = r.err
			}
		case i := <-answers:
			if i == len(cancels)-1 && !done[i] {
				// The newest attempt was answered: from now on only
				// a body that stops makes it raced.
				timer.Reset(scale * delays.full)
			}
		case <-timer.C:
			if len(cancels) >= maxAttempts || maxHedges == 0 {
				continue
			}
			newest := len(cancels) - 1
			if last := lastProgress[newest].Load(); last != 0 && !done[newest] {
				if idle := time.Since(time.Unix(0, last)); idle < scale*delays.full {
					timer.Reset(scale*delays.full - idle) // its body is coming
					continue
				}
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
				scale *= 2
			}
			metrics.RegistryHedgesFired.WithLabelValues(host).Inc()
			launch(make([]byte, len(p)))
			inflight++
			timer.Reset(scale * delays.answer)
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
