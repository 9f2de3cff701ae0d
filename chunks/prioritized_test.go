package chunks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/containerd/log/logtest"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lazyfs/lazyfs/metrics"
)

// prioritizedLayer has files a and b (prioritized, first in the blob) and c
// after them, 3 chunks each.
func prioritizedLayer(t *testing.T) (*testLayer, *Layout, int64) {
	t.Helper()
	l := buildLayer(t, []testFile{{"a", fileData(30_000, 41)}, {"b", fileData(30_000, 42)}, {"c", fileData(30_000, 43)}},
		estargz.WithChunkSize(10_000))
	var all []Chunk
	for _, name := range []string{"a", "b", "c"} {
		all = append(all, l.files[name]...)
	}
	return l, NewLayout(all), l.files["c"][0].BlobOffset
}

// TestLayoutBefore pins Before at its edge: a stream starting at the
// landmark's offset is not before it; one byte further, it is.
func TestLayoutBefore(t *testing.T) {
	l, layout, landmark := prioritizedLayer(t)
	if got := layout.Before(landmark); len(got) != 6 || got[0].Digest != l.files["a"][0].Digest || got[5].Digest != l.files["b"][2].Digest {
		t.Errorf("Before(landmark) = %d chunks, want the 6 of a and b in blob order", len(got))
	}
	if got := layout.Before(landmark + 1); len(got) != 7 {
		t.Errorf("Before(landmark+1) = %d chunks, want 7", len(got))
	}
	if got := layout.Before(0); len(got) != 0 {
		t.Errorf("Before(0) = %d chunks, want none", len(got))
	}
}

// TestPrefetchMergesAndSkipsCached guards Prefetch: the prioritized chunks
// go out as one merged range request, progress reaches their size, reads
// of them afterwards cost the source nothing, what follows the landmark is
// not fetched, and a second prefetch of chunks held in memory asks nothing.
func TestPrefetchMergesAndSkipsCached(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l, layout, landmark := prioritizedLayer(t)
	src := &memSource{blob: l.blob}
	r := NewReader(src, Options{LayerDigest: testLayerDigest, ReadAhead: -1, SequentialPrefetch: -1})
	var progress int64
	if err := r.Prefetch(ctx, layout.Before(landmark), func(done int64) { progress = done }); err != nil {
		t.Fatal(err)
	}
	if n := len(src.spans()); n != 1 {
		t.Errorf("prefetch of 6 adjacent chunks sent %d requests, want 1 merged", n)
	}
	if progress != 60_000 {
		t.Errorf("progress = %d, want 60000 (the files before the landmark)", progress)
	}
	for _, c := range fetchesOf(src, l.files["c"]) {
		if c != 0 {
			t.Error("a chunk after the landmark was prefetched")
		}
	}
	calls := len(src.spans())
	for _, name := range []string{"a", "b"} {
		if _, err := r.ReadAt(ctx, l.files[name], make([]byte, 30_000), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Prefetch(ctx, layout.Before(landmark), nil); err != nil {
		t.Fatal(err)
	}
	if n := len(src.spans()) - calls; n != 0 {
		t.Errorf("reads and a second prefetch of prefetched chunks sent %d requests, want 0", n)
	}
}

// TestPrefetchStopsWithItsContext guards the ctx check: a prefetch whose
// mount was detached asks the source nothing more.
func TestPrefetchStopsWithItsContext(t *testing.T) {
	l, layout, landmark := prioritizedLayer(t)
	src := &memSource{blob: l.blob}
	r := NewReader(src, Options{LayerDigest: testLayerDigest})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Prefetch(ctx, layout.Before(landmark), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Prefetch after its context ended = %v, want context.Canceled", err)
	}
	if n := len(src.spans()); n != 0 {
		t.Errorf("%d requests after the context ended, want 0", n)
	}
}

// TestFillBackground guards Fill's class: a whole-layer fill goes through
// the scheduler as background work (paced, its own slots), and leaves
// every chunk of the layer readable without the source.
func TestFillBackground(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l, layout, _ := prioritizedLayer(t)
	src := &memSource{blob: l.blob}
	s := NewScheduler(SchedulerOptions{})
	r := NewReader(src, Options{LayerDigest: testLayerDigest, Scheduler: s, Registry: "reg", MemoryCacheSize: 1 << 20})
	before := histogramSamples(t, "background")
	if err := r.Fill(ctx, layout.Chunks(), Background, nil); err != nil {
		t.Fatal(err)
	}
	if got := histogramSamples(t, "background") - before; got == 0 {
		t.Error("no background request went through the scheduler")
	}
	calls := len(src.spans())
	for _, name := range []string{"a", "b", "c"} {
		if _, err := r.ReadAt(ctx, l.files[name], make([]byte, 30_000), 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(src.spans()) - calls; n != 0 {
		t.Errorf("%d requests after a whole-layer fill, want 0", n)
	}
}

// TestFillPacedByItsBytes guards the size a fill's request is paced by:
// BackgroundRate counts the compressed bytes the request asks for (its
// streams' span in the blob), so that after one request of B bytes at R
// bytes per second the next background request may start B/R later, not
// earlier (a negative span) or later (a span counted from the blob's
// start).
func TestFillPacedByItsBytes(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l, _, _ := prioritizedLayer(t)
	file := l.files["c"]
	span := file[len(file)-1].BlobOffset + file[len(file)-1].BlobSize - file[0].BlobOffset
	// One byte per second: the first request goes at once, and what it
	// reserves (hours) dwarfs how long the test takes.
	s := NewScheduler(SchedulerOptions{BackgroundRate: 1})
	r := NewReader(&memSource{blob: l.blob}, Options{LayerDigest: testLayerDigest, Scheduler: s, Registry: "reg", MemoryCacheSize: 1 << 20})
	before := time.Now()
	if err := r.Fill(ctx, file, Background, nil); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	s.mu.Lock()
	next := s.regs["reg"].nextBackground
	s.mu.Unlock()
	want := time.Duration(span) * time.Second
	if next.Before(before.Add(want)) || next.After(after.Add(want)) {
		t.Errorf("next background request may start %v after the fill began, want %v (the request's %d bytes at 1 byte/s)", next.Sub(before), want, span)
	}
}

// TestFillRounds pins Fill's rounds at their edges: a round takes chunks
// while their compressed bytes fit prefetchBatchRequests × MaxRequestSize
// (a chunk that fills it exactly is in), and always at least one, even a
// chunk larger than the whole budget (else such a chunk would never go).
func TestFillRounds(t *testing.T) {
	const streamSize = 1000 // each chunk's compressed stream, padded
	var blob []byte
	var cs []Chunk
	var size int64
	for i := range 4 {
		data := []byte(fmt.Sprintf("chunk %d of a fill", i))
		z := gzipped(t, data)
		cs = append(cs, Chunk{Size: int64(len(data)), BlobOffset: int64(len(blob)), BlobSize: streamSize, Digest: digest.FromBytes(data)})
		blob = append(blob, z...)
		blob = append(blob, make([]byte, streamSize-len(z))...)
		size = int64(len(data))
	}
	for _, tc := range []struct {
		name           string
		maxRequestSize int64
		want           []int64 // progress after each round
	}{
		{"two streams fill a round exactly", 2 * streamSize / prefetchBatchRequests, []int64{2 * size, 4 * size}},
		{"a stream fills a round", streamSize / prefetchBatchRequests, []int64{size, 2 * size, 3 * size, 4 * size}},
		{"a stream larger than a round", streamSize/prefetchBatchRequests - 1, []int64{size, 2 * size, 3 * size, 4 * size}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A round that takes nothing would loop for good: the
			// deadline (the fill takes milliseconds) turns that into a
			// failure.
			ctx, cancel := context.WithTimeout(logtest.WithT(context.Background(), t), 10*time.Second)
			defer cancel()
			src := &memSource{blob: blob}
			r := NewReader(src, Options{LayerDigest: testLayerDigest, MaxRequestSize: tc.maxRequestSize, SequentialPrefetch: -1})
			var got []int64
			if err := r.Fill(ctx, cs, Prefetch, func(done int64) { got = append(got, done) }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("progress per round %v, want %v", got, tc.want)
			}
			calls := len(src.spans())
			for _, c := range cs {
				if _, err := r.ReadAt(ctx, []Chunk{c}, make([]byte, c.Size), 0); err != nil {
					t.Fatal(err)
				}
			}
			if n := len(src.spans()) - calls; n != 0 {
				t.Errorf("%d requests for chunks the fill fetched, want 0", n)
			}
		})
	}
}

func histogramSamples(t *testing.T, class string) uint64 {
	t.Helper()
	var m dto.Metric
	if err := metrics.FetchWait.WithLabelValues(class).(prometheus.Histogram).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}
