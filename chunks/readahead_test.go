package chunks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containerd/log/logtest"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lazyfs/lazyfs/metrics"
)

// smallFiles is a layer shaped like a package directory: many small files
// next to each other in the blob, and a few big multi-chunk ones among them.
type smallFiles struct {
	*testLayer
	small  []string // the small files, in blob order
	big    []string
	all    []Chunk // every chunk of every file
	layout *Layout
}

// streamLayouts are the two ways eStargz lays chunks out: one gzip stream
// per chunk, or small chunks sharing streams (InnerOffset used).
var streamLayouts = []struct {
	name string
	opts []estargz.Option
}{
	{"one stream per chunk", []estargz.Option{estargz.WithChunkSize(8000)}},
	{"shared streams", []estargz.Option{estargz.WithChunkSize(8000), estargz.WithMinChunkSize(4000)}},
}

// smallFilesCache holds the layers tests share: building one is the
// slowest part of these tests under -race. Nothing modifies them.
var smallFilesCache struct {
	sync.Mutex
	layers map[[2]int]*smallFiles
}

// sharedSmallFiles returns the layer of n small files in streamLayouts[sl],
// built once per test binary.
func sharedSmallFiles(tb testing.TB, n, sl int) *smallFiles {
	tb.Helper()
	c := &smallFilesCache
	c.Lock()
	defer c.Unlock()
	key := [2]int{n, sl}
	if s, ok := c.layers[key]; ok {
		return s
	}
	s := buildSmallFiles(tb, n, streamLayouts[sl].opts...)
	if c.layers == nil {
		c.layers = make(map[[2]int]*smallFiles)
	}
	c.layers[key] = s
	return s
}

func buildSmallFiles(tb testing.TB, n int, opts ...estargz.Option) *smallFiles {
	tb.Helper()
	var files []testFile
	var big []string
	for i := range n {
		if i%400 == 200 {
			name := fmt.Sprintf("pkg/lib%02d.so", i/400)
			files = append(files, testFile{name, fileData(50_000, uint64(1e6+i))})
			big = append(big, name)
		}
		// About 125 bytes, like the demo's files.
		files = append(files, testFile{fmt.Sprintf("pkg/mod%05d.py", i), fileData(100+i%50, uint64(i))})
	}
	l := buildLayer(tb, files, opts...)
	s := &smallFiles{testLayer: l, big: big}
	for name, file := range l.files {
		s.all = append(s.all, file...)
		if !slices.Contains(big, name) && len(file) > 0 && name[:4] == "pkg/" {
			s.small = append(s.small, name)
		}
	}
	slices.SortFunc(s.small, func(a, b string) int {
		x, y := l.files[a][0], l.files[b][0]
		if x.BlobOffset != y.BlobOffset {
			return int(x.BlobOffset - y.BlobOffset)
		}
		return int(x.InnerOffset - y.InnerOffset)
	})
	for _, name := range big {
		if len(l.files[name]) < 4 {
			tb.Fatalf("%s has %d chunks, want several", name, len(l.files[name]))
		}
	}
	if len(s.small) != n {
		tb.Fatalf("%d small files in the layer, want %d", len(s.small), n)
	}
	s.layout = NewLayout(s.all)
	return s
}

// payload returns the compressed bytes from the first chunk's stream to
// the end of the last one, and the largest stream.
func (s *smallFiles) payload() (total, largest int64) {
	var first, end int64 = -1, 0
	for _, c := range s.all {
		if first < 0 || c.BlobOffset < first {
			first = c.BlobOffset
		}
		end = max(end, c.BlobOffset+c.BlobSize)
		largest = max(largest, c.BlobSize)
	}
	return end - first, largest
}

// readFile reads a whole file with one ReadAt and checks its bytes.
func (s *smallFiles) readFile(ctx context.Context, r *Reader, name string) error {
	want := s.data[name]
	p := make([]byte, len(want)+1)
	n, err := r.ReadAt(ctx, s.files[name], p, 0)
	if err == nil {
		err = errors.New("no EOF")
	}
	if err != io.EOF {
		return fmt.Errorf("%s: ReadAt = %d, want %d bytes and EOF: %w", name, n, len(want), err)
	}
	if !bytes.Equal(p[:n], want) {
		return fmt.Errorf("%s: wrong bytes", name)
	}
	return nil
}

func TestReadAheadSmallFiles(t *testing.T) {
	const files, readAhead = 600, 16 << 10
	for i, sl := range streamLayouts {
		s := sharedSmallFiles(t, files, i)
		total, largest := s.payload()
		for _, tc := range []struct {
			name       string
			layout     *Layout
			readAhead  int64
			maxRequest int64
			on         bool
		}{
			{"on", s.layout, readAhead, 0, true},
			{"capped by MaxRequestSize", s.layout, 1 << 20, readAhead, true},
			{"off", s.layout, -1, 0, false},
			{"no layout", nil, readAhead, 0, false},
		} {
			t.Run(sl.name+"/"+tc.name, func(t *testing.T) {
				ctx := logtest.WithT(context.Background(), t)
				src := &memSource{blob: s.blob}
				r := NewReader(src, Options{Layout: tc.layout, ReadAhead: tc.readAhead, MaxRequestSize: tc.maxRequest, LayerDigest: testLayerDigest})
				aheadBefore := counterValue(t, metrics.ReadAheadBytes)
				for _, name := range s.small {
					if err := s.readFile(ctx, r, name); err != nil {
						t.Fatal(err)
					}
				}
				spans := src.spans()
				ahead := counterValue(t, metrics.ReadAheadBytes) - aheadBefore
				t.Logf("%d small files, %d compressed bytes (largest stream %d): %d requests, %.0f bytes read ahead",
					len(s.small), total, largest, len(spans), ahead)
				for _, sp := range spans {
					if sp.len > readAhead && sp.len > largest {
						t.Errorf("request of %d bytes at %d exceeds ReadAhead %d", sp.len, sp.off, readAhead)
					}
				}
				if !tc.on {
					// Without read-ahead, one request per small file,
					// even where files share a stream.
					want := len(s.small)
					if len(spans) != want || ahead != 0 {
						t.Errorf("%d requests (%.0f bytes read ahead), want %d (0)", len(spans), ahead, want)
					}
					return
				}
				// Every window but the last is cut short of ReadAhead by
				// less than one stream.
				bound := int(total/(readAhead-largest)) + 2
				if len(spans) > bound || ahead == 0 {
					t.Errorf("%d requests (%.0f bytes read ahead), want at most %d", len(spans), ahead, bound)
				}
				for i, n := range fetchesOf(src, s.all) {
					if n > 1 {
						t.Fatalf("chunk at blob offset %d fetched %d times", s.all[i].BlobOffset, n)
					}
				}
			})
		}
	}
}

func TestReadAheadBackward(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	const readAhead = 16 << 10
	s := sharedSmallFiles(t, 600, 0)
	total, largest := s.payload()
	src := &memSource{blob: s.blob}
	r := NewReader(src, Options{Layout: s.layout, ReadAhead: readAhead, LayerDigest: testLayerDigest})
	for i := len(s.small) - 1; i >= 0; i-- {
		if err := s.readFile(ctx, r, s.small[i]); err != nil {
			t.Fatal(err)
		}
	}
	if n, bound := len(src.spans()), int(total/(readAhead-largest))+2; n > bound {
		t.Errorf("reading backwards: %d requests, want at most %d", n, bound)
	}
}

func TestReadAheadBadChunk(t *testing.T) {
	for i, sl := range streamLayouts {
		s := sharedSmallFiles(t, 600, i)
		first := s.small[0]
		// victim is the first small file in another stream than first's:
		// read ahead with it, never asked for by that read.
		var victim string
		for _, name := range s.small {
			if s.files[name][0].BlobOffset != s.files[first][0].BlobOffset {
				victim = name
				break
			}
		}
		vc := s.files[victim][0]
		corrupt := func(p []byte, off int64) {
			// Early in the stream, so that whatever of it the victim
			// takes is damaged, even where it shares the stream.
			if at := vc.BlobOffset + 20 - off; at >= 0 && at < int64(len(p)) {
				p[at] ^= 0x40
			}
		}
		for _, tc := range []struct {
			name    string
			hook    func(ctx context.Context, n int, p []byte, off int64) error
			wantErr bool
		}{
			{"always corrupt", func(_ context.Context, _ int, p []byte, off int64) error {
				corrupt(p, off)
				return nil
			}, true},
			{"corrupt once", func(_ context.Context, n int, p []byte, off int64) error {
				if n == 1 {
					corrupt(p, off)
				}
				return nil
			}, false},
		} {
			t.Run(sl.name+"/"+tc.name, func(t *testing.T) {
				ctx := logtest.WithT(context.Background(), t)
				src := &memSource{blob: s.blob, hook: tc.hook}
				r := NewReader(src, Options{Layout: s.layout, ReadAhead: 16 << 10, LayerDigest: testLayerDigest})
				failures := counterValue(t, metrics.VerificationFailures)
				if err := s.readFile(ctx, r, first); err != nil {
					t.Fatalf("the read that did not ask for the bad chunk: %v", err)
				}
				if got := counterValue(t, metrics.VerificationFailures) - failures; got < 1 {
					t.Error("the bad chunk read ahead was not counted")
				}
				spans := src.spans()
				if len(spans) != 1 || fetchesOf(src, []Chunk{vc})[0] != 1 {
					t.Fatalf("requests %v: want one, covering the bad chunk", spans)
				}
				err := s.readFile(ctx, r, victim)
				if got := len(src.spans()) - len(spans); got != 1 && tc.wantErr {
					t.Errorf("%d requests for the bad chunk, want its own only (retries are the source's)", got)
				}
				switch {
				case tc.wantErr && !errors.Is(err, ErrVerification):
					t.Errorf("reading the bad chunk: %v, want ErrVerification", err)
				case !tc.wantErr && err != nil:
					t.Errorf("reading a chunk that was bad only when read ahead: %v", err)
				}
			})
		}
	}
}

// TestReadAheadWaiters guards reads of a chunk another read is fetching
// ahead: they wait for that fetch rather than fetch the chunk again, and
// if it fails verification, fetch it themselves instead of failing with
// the other read's error.
func TestReadAheadWaiters(t *testing.T) {
	s := sharedSmallFiles(t, 600, 0)
	first, victim := s.small[0], s.small[5]
	vc := s.files[victim][0]
	for _, tc := range []struct {
		name      string
		corrupt   bool
		wantCalls int
	}{
		{"chunk read ahead is fine", false, 1},
		{"chunk read ahead is bad", true, 2}, // the window, then the waiter's own
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := logtest.WithT(context.Background(), t)
			started := make(chan struct{})
			src := &memSource{blob: s.blob, hook: func(_ context.Context, n int, p []byte, off int64) error {
				if n == 1 {
					close(started)
					time.Sleep(50 * time.Millisecond) // let B wait for this fetch
					if tc.corrupt {
						p[vc.BlobOffset+20-off] ^= 0x40
					}
				}
				return nil
			}}
			r := NewReader(src, Options{Layout: s.layout, ReadAhead: 16 << 10, LayerDigest: testLayerDigest})
			aErr := make(chan error, 1)
			go func() { aErr <- s.readFile(ctx, r, first) }()
			<-started
			if err := s.readFile(ctx, r, victim); err != nil {
				t.Errorf("waiting reader: %v", err)
			}
			if err := <-aErr; err != nil {
				t.Errorf("reader that read ahead: %v", err)
			}
			if n := len(src.spans()); n != tc.wantCalls {
				t.Errorf("%d requests, want %d", n, tc.wantCalls)
			}
		})
	}
}

func TestReadAheadConcurrent(t *testing.T) {
	for i, sl := range streamLayouts {
		t.Run(sl.name, func(t *testing.T) {
			ctx := logtest.WithT(context.Background(), t)
			s := sharedSmallFiles(t, 600, i)
			src := &memSource{blob: s.blob, hook: func(context.Context, int, []byte, int64) error {
				time.Sleep(time.Millisecond) // widen the window in which fetches overlap
				return nil
			}}
			r := NewReader(src, Options{Layout: s.layout, ReadAhead: 8 << 10, LayerDigest: testLayerDigest})
			names := append(slices.Clone(s.small), s.big...)
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for i := range 8 {
				wg.Go(func() {
					// Readers go forward, backward and in strides from
					// different places, so their windows collide.
					for k := range names {
						j := (i*len(names)/8 + k*(1+i%3)) % len(names)
						if i%2 == 1 {
							j = len(names) - 1 - j
						}
						if err := s.readFile(ctx, r, names[j]); err != nil {
							errs <- fmt.Errorf("reader %d: %w", i, err)
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if sl.name != "one stream per chunk" {
				// Where streams are shared, two windows may both need
				// one, each for chunks of its own.
				return
			}
			for i, n := range fetchesOf(src, s.all) {
				if n > 1 {
					t.Errorf("chunk at blob offset %d fetched %d times, want once", s.all[i].BlobOffset, n)
				}
			}
		})
	}
}

func TestReadAheadMemoryBound(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	s := sharedSmallFiles(t, 600, 0)
	const bound = 8 << 10 // decompressed: about 60 small files
	src := &memSource{blob: s.blob}
	r := NewReader(src, Options{Layout: s.layout, MemoryCacheSize: bound, ReadAhead: 1 << 20, LayerDigest: testLayerDigest})
	for _, name := range s.small {
		before := len(src.spans())
		if err := s.readFile(ctx, r, name); err != nil {
			t.Fatal(err)
		}
		size := r.cache.Size()
		if size > bound {
			t.Fatalf("cache holds %d bytes, bound is %d", size, bound)
		}
		for _, sp := range src.spans()[before:] {
			var ahead int64
			for _, c := range s.all {
				if c.BlobOffset >= sp.off && c.BlobOffset+c.BlobSize <= sp.off+sp.len && c != s.files[name][0] {
					ahead += c.Size
				}
			}
			if ahead > bound/4 {
				t.Fatalf("request at %d read %d decompressed bytes ahead, more than a quarter of the %d-byte cache", sp.off, ahead, bound)
			}
		}
	}
	if n := len(src.spans()); n > len(s.small)/4 {
		t.Errorf("%d requests for %d files: read-ahead was not clamped but lost", n, len(s.small))
	}

	// Without a memory cache, chunks read ahead could not be kept.
	src = &memSource{blob: s.blob}
	r = NewReader(src, Options{Layout: s.layout, MemoryCacheSize: -1, LayerDigest: testLayerDigest})
	for _, name := range s.small[:50] {
		if err := s.readFile(ctx, r, name); err != nil {
			t.Fatal(err)
		}
	}
	for _, sp := range src.spans() {
		if sp.len > 1<<10 {
			t.Fatalf("request of %d bytes without a memory cache: read ahead", sp.len)
		}
	}
}

// counterValue returns the current value of a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
