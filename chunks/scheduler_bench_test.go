package chunks

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
)

// BenchmarkForegroundBehindPrefetch measures what a container's read of
// one uncached chunk waits while a layer's prefetch keeps the registry
// busy (every request takes 10 ms, the registry allows 2 at once). With
// priorities the read has slots of its own; the baseline, measured in the
// same run, is the same limit without classes (every request foreground,
// first come first served), as a plain per-registry semaphore would do.
// It reports the median and worst read latency.
//
//	go test -run '^$' -bench ForegroundBehindPrefetch ./chunks/
func BenchmarkForegroundBehindPrefetch(b *testing.B) {
	const latency = 10 * time.Millisecond
	l := buildLayer(b, []testFile{{"prefetched", fileData(2<<20, 51)}, {"read", fileData(64<<10, 52)}}, estargz.WithChunkSize(16<<10))
	var prioritized []Chunk
	prioritized = append(prioritized, l.files["prefetched"]...)
	for _, mode := range []string{"priorities", "fifo"} {
		b.Run(mode, func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				src := &memSource{blob: l.blob, hook: sleepHook(latency)}
				s := NewScheduler(SchedulerOptions{Concurrency: 2})
				r := NewReader(src, Options{
					LayerDigest: testLayerDigest, Scheduler: s, Registry: "reg",
					MaxRequestSize: 16 << 10, ReadAhead: -1, SequentialPrefetch: -1, MemoryCacheSize: 64 << 20,
				})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() {
					defer close(done)
					if mode == "fifo" {
						// Everything in one class: the read queues
						// behind whatever prefetch asked first.
						lift := NewLift()
						lift.Raise()
						r.prefetchAs(ctx, prioritized, lift)
						return
					}
					_ = r.Prefetch(ctx, prioritized, nil)
				}()
				// Let the prefetch fill the registry's slots and queue.
				for {
					s.mu.Lock()
					q := s.slots("reg")
					busy := q.inFlight[Foreground]+q.inFlight[Prefetch] >= 2
					s.mu.Unlock()
					if busy {
						break
					}
					time.Sleep(time.Millisecond)
				}
				start := time.Now()
				if _, err := r.ReadAt(ctx, l.files["read"], make([]byte, 1000), 0); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				cancel()
				<-done
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2])/float64(time.Millisecond), "median_read_ms")
			b.ReportMetric(float64(lat[len(lat)-1])/float64(time.Millisecond), "max_read_ms")
		})
	}
}

// prefetchAs is Prefetch with every request lifted to the foreground
// class from the start: the baseline of BenchmarkForegroundBehindPrefetch.
func (r *Reader) prefetchAs(ctx context.Context, cs []Chunk, lift *Lift) {
	r.mu.Lock()
	var mine []claim
	for _, c := range cs {
		k := keyOf(c)
		if _, ok := r.inflight[k]; ok {
			continue
		}
		p := &pending{done: make(chan struct{}), lift: lift}
		r.inflight[k] = p
		mine = append(mine, claim{idx: -1, c: c, p: p, speculative: true})
	}
	r.mu.Unlock()
	r.fetch(ctx, mine, Prefetch, lift)
}
