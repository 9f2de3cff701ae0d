package chunks

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/log/logtest"
	"github.com/containerd/stargz-snapshotter/estargz"
)

// sleepHook makes every source call take d, as a registry round trip
// would, or end early with its context.
func sleepHook(d time.Duration) func(context.Context, int, []byte, int64) error {
	return func(ctx context.Context, _ int, _ []byte, _ int64) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

const (
	prefetchChunk = 256 << 10
	prefetchPiece = 128 << 10 // what the kernel's FUSE READs ask for
)

// prefetchLayer is one file of 16 chunks of 256 KiB, built once. Its
// bytes compress very well (but differ in every chunk), so that
// decompressing them is cheap even under -race and the time a read takes
// is mostly the source's.
var prefetchLayer = sync1(func(tb testing.TB) *testLayer {
	const size = 16 * prefetchChunk
	var data []byte
	for i := 0; len(data) < size; i++ {
		data = append(data, bytes.Repeat([]byte(fmt.Sprintf("block %08d ", i)), 256)...)
	}
	return buildLayer(tb, []testFile{{"f", data[:size]}}, estargz.WithChunkSize(prefetchChunk))
})

// sync1 returns a function that builds a value on its first call only.
func sync1[T any](build func(testing.TB) T) func(testing.TB) T {
	var (
		done atomic.Bool
		v    T
	)
	return func(tb testing.TB) T {
		tb.Helper()
		if !done.Load() {
			// Tests of this package do not run in parallel.
			v = build(tb)
			done.Store(true)
		}
		return v
	}
}

// newPrefetchReader returns a Reader whose background work ends, and is
// waited for, when the test does.
func newPrefetchReader(t *testing.T, src Source, opts Options) *Reader {
	t.Helper()
	ctx, cancel := context.WithCancel(logtest.WithT(context.Background(), t))
	opts.Context = ctx
	opts.LayerDigest = testLayerDigest
	r := NewReader(src, opts)
	t.Cleanup(func() {
		cancel()
		r.waitBackground()
	})
	return r
}

// readPieces reads file in prefetchPiece pieces at offs and checks the
// bytes against want.
func readPieces(t *testing.T, r *Reader, file []Chunk, want []byte, offs []int64) {
	t.Helper()
	ctx := logtest.WithT(context.Background(), t)
	p := make([]byte, prefetchPiece)
	for _, off := range offs {
		n, err := r.ReadAt(ctx, file, p, off)
		if err != nil && err != io.EOF {
			t.Fatalf("ReadAt(%d): %v", off, err)
		}
		if !bytes.Equal(p[:n], want[off:off+int64(n)]) {
			t.Fatalf("ReadAt(%d): bytes differ from the file", off)
		}
	}
}

func sequentialOffsets(size int64) []int64 {
	var offs []int64
	for off := int64(0); off < size; off += prefetchPiece {
		offs = append(offs, off)
	}
	return offs
}

func TestSequentialPrefetch(t *testing.T) {
	const latency = 40 * time.Millisecond
	l := prefetchLayer(t)
	file, want := l.files["f"], l.data["f"]
	if len(file) != 16 {
		t.Fatalf("test layer has %d chunks, want 16", len(file))
	}
	serial := time.Duration(len(file)) * latency
	for _, tc := range []struct {
		name     string
		prefetch int
		cache    int64
		// overlap is how many requests must have been in flight at
		// once: the proof that fetches ran ahead of the reads. Timings
		// are not asserted (a loaded 2-core CI machine makes them
		// meaningless); BenchmarkSequentialPrefetch measures them.
		overlap int32
	}{
		{"default", 0, 0, 2},
		{"four ahead", 4, 0, 2},
		// Half of this cache is one chunk: one at a time.
		{"memory bound", 4, 2 * prefetchChunk, 0},
		{"off", -1, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &memSource{blob: l.blob}
			r := newPrefetchReader(t, src, Options{SequentialPrefetch: tc.prefetch, MemoryCacheSize: tc.cache})
			var overBound, inFlight, maxInFlight atomic.Int32
			src.hook = func(ctx context.Context, n int, p []byte, off int64) error {
				r.mu.Lock()
				if r.prefetch.chunks > maxPrefetchChunks || r.prefetch.bytes > r.prefetchBudget() {
					overBound.Add(1)
				}
				r.mu.Unlock()
				now := inFlight.Add(1)
				defer inFlight.Add(-1)
				for old := maxInFlight.Load(); now > old && !maxInFlight.CompareAndSwap(old, now); old = maxInFlight.Load() {
				}
				return sleepHook(latency)(ctx, n, p, off)
			}

			start := time.Now()
			readPieces(t, r, file, want, sequentialOffsets(int64(len(want))))
			elapsed := time.Since(start)
			r.waitBackground() // nothing is left to prefetch past the end

			for i, n := range fetchesOf(src, file) {
				if n != 1 {
					t.Errorf("chunk %d fetched %d times, want once", i, n)
				}
			}
			if n := overBound.Load(); n > 0 {
				t.Errorf("%d requests went out with more prefetched than the bounds allow", n)
			}
			if got := maxInFlight.Load(); got < tc.overlap {
				t.Errorf("at most %d requests were in flight at once, want %d: nothing was fetched ahead", got, tc.overlap)
			}
			t.Logf("%v for %d chunks (%v one after the other), %d requests", elapsed, len(file), serial, len(src.spans()))
		})
	}
}

// TestPrefetchRandomAccess guards against prefetching for reads that do
// not follow each other: each costs its own chunk and nothing more.
func TestPrefetchRandomAccess(t *testing.T) {
	l := prefetchLayer(t)
	file, want := l.files["f"], l.data["f"]
	src := &memSource{blob: l.blob}
	r := newPrefetchReader(t, src, Options{SequentialPrefetch: 4})
	chunks := []int64{0, 8, 3, 12, 6, 14, 10, 1}
	var offs []int64
	for _, k := range chunks {
		// Into the last part of each chunk, reaching its end.
		offs = append(offs, k*prefetchChunk+prefetchChunk-prefetchPiece)
	}
	readPieces(t, r, file, want, offs)
	r.waitBackground()
	if got := len(src.spans()); got != len(chunks) {
		t.Errorf("%d random reads made %d requests, want %d", len(chunks), got, len(chunks))
	}
}

// TestPrefetchBadChunk checks that a prefetched chunk that fails
// verification fails no read: the read that triggered it succeeds, and
// the read that needs the chunk fetches and verifies it again, whether it
// came while the prefetch was in flight or after.
func TestPrefetchBadChunk(t *testing.T) {
	l := prefetchLayer(t)
	file, want := l.files["f"], l.data["f"]
	bad := file[1]
	for _, tc := range []struct {
		name  string
		after bool // read the chunk only after the prefetch ended
	}{
		{"read while prefetching", false},
		{"read after prefetch", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &memSource{blob: l.blob}
			var corrupted atomic.Bool
			src.hook = func(ctx context.Context, n int, p []byte, off int64) error {
				if off <= bad.BlobOffset && bad.BlobOffset+bad.BlobSize <= off+int64(len(p)) && corrupted.CompareAndSwap(false, true) {
					p[bad.BlobOffset+bad.BlobSize/2-off] ^= 0xff
				}
				return sleepHook(20*time.Millisecond)(ctx, n, p, off)
			}
			r := newPrefetchReader(t, src, Options{})

			// The second piece is sequential: it prefetches chunks 1 and 2.
			readPieces(t, r, file, want, []int64{0, prefetchPiece})
			if tc.after {
				r.waitBackground()
			}
			readPieces(t, r, file, want, []int64{prefetchChunk})
			r.waitBackground()

			if !corrupted.Load() {
				t.Fatal("no request covered the chunk to corrupt")
			}
			if got := fetchesOf(src, file)[1]; got != 2 {
				t.Errorf("bad chunk fetched %d times, want twice (prefetch, then the read)", got)
			}
			if got := r.prefetchDropped.Load(); got != 1 {
				t.Errorf("%d prefetched chunks dropped, want 1", got)
			}
		})
	}
}

// TestPrefetchStopsWithContext checks that ending Options.Context ends a
// prefetch stuck on the source, and that a read waiting for it then
// fetches the chunk itself.
func TestPrefetchStopsWithContext(t *testing.T) {
	l := prefetchLayer(t)
	file, want := l.files["f"], l.data["f"]
	src := &memSource{blob: l.blob}
	// The first request that covers chunk 1 is the prefetch (the first
	// reads stay in chunk 0): it is stuck until its context ends. Matched
	// by range, not by request number: the prefetches of chunks 1 and 2 may
	// start in either order.
	var stalled atomic.Bool
	c1 := file[1].BlobOffset
	src.hook = func(ctx context.Context, _ int, p []byte, off int64) error {
		if off <= c1 && c1 < off+int64(len(p)) && stalled.CompareAndSwap(false, true) {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	bg, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := NewReader(src, Options{LayerDigest: testLayerDigest, Context: bg})
	readPieces(t, r, file, want, []int64{0, prefetchPiece})

	done := make(chan struct{})
	go func() {
		defer close(done)
		readPieces(t, r, file, want, []int64{prefetchChunk})
	}()
	// Let the read find the stuck prefetch and wait for it.
	for deadline := time.Now().Add(10 * time.Second); !stalled.Load() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	cancel()
	stopped := make(chan struct{})
	go func() {
		r.waitBackground()
		close(stopped)
	}()
	for _, ch := range []chan struct{}{stopped, done} {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("prefetch or read still running after the context ended")
		}
	}
	if got := r.prefetchDropped.Load(); got != 0 {
		t.Errorf("%d prefetched chunks counted as failed, want 0: a cancelled prefetch did not fail", got)
	}
	if fetchesOf(src, file)[1] < 2 {
		t.Errorf("chunk 1 fetched %d times, want the read to fetch it again", fetchesOf(src, file)[1])
	}
}
