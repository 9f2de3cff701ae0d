package chunks

import (
	"context"
	"errors"
	"testing"

	"github.com/containerd/log"
	"github.com/containerd/log/logtest"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"
	logrustest "github.com/sirupsen/logrus/hooks/test"

	"github.com/lazyfs/lazyfs/metrics"
)

// TestFailuresLoggedWithTheirCause guards the log lines an operator reads
// when chunks fail: a chunk a read asked for and one read ahead each log
// one line that carries the failure's cause (here the digest mismatch)
// and how many chunks failed with it.
func TestFailuresLoggedWithTheirCause(t *testing.T) {
	l, _, _ := prioritizedLayer(t)
	wrong := digest.FromString("other bytes")
	for _, tc := range []struct {
		name  string
		read  func(ctx context.Context, t *testing.T)
		msg   string
		level logrus.Level
	}{
		{"a chunk a read asked for", func(ctx context.Context, t *testing.T) {
			file := append([]Chunk(nil), l.files["a"]...)
			file[0].Digest = wrong
			r := NewReader(&memSource{blob: l.blob}, Options{LayerDigest: testLayerDigest, ReadAhead: -1, SequentialPrefetch: -1})
			if _, err := r.ReadAt(ctx, file, make([]byte, 10), 0); !errors.Is(err, ErrVerification) {
				t.Fatalf("ReadAt = %v, want a verification failure", err)
			}
		}, "chunk fetch failed", logrus.ErrorLevel},
		{"a chunk read ahead", func(ctx context.Context, t *testing.T) {
			var all []Chunk
			for _, name := range []string{"a", "b", "c"} {
				all = append(all, l.files[name]...)
			}
			all[len(l.files["a"])].Digest = wrong // b's first chunk, next to a in the blob
			r := NewReader(&memSource{blob: l.blob}, Options{LayerDigest: testLayerDigest, Layout: NewLayout(all), SequentialPrefetch: -1})
			if _, err := r.ReadAt(ctx, l.files["a"], make([]byte, 10), 0); err != nil {
				t.Fatalf("ReadAt of a good chunk = %v", err)
			}
		}, "chunk read ahead failed verification, dropped", logrus.WarnLevel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logger, hook := logrustest.NewNullLogger()
			ctx := log.WithLogger(context.Background(), logrus.NewEntry(logger))
			tc.read(ctx, t)
			var found int
			for _, e := range hook.AllEntries() {
				if e.Message != tc.msg {
					continue
				}
				found++
				err, _ := e.Data[logrus.ErrorKey].(error)
				if e.Level != tc.level || !errors.Is(err, ErrVerification) || e.Data["chunks"] != 1 {
					t.Errorf("logged %q at %v with error %v and chunks %v; want %v, the verification failure and 1", e.Message, e.Level, err, e.Data["chunks"], tc.level)
				}
			}
			if found != 1 {
				t.Errorf("%q logged %d times, want once", tc.msg, found)
			}
		})
	}
}

// TestOperatorCounters guards the counters an operator reads for what the
// logs say once: every chunk that fails its digest counts once in
// lazyfs_verification_failures_total (and a good one never), and every
// chunk the memory tier evicts counts in lazyfs_memory_cache_evictions_total,
// and the compressed bytes read ahead that no read asked for count in
// lazyfs_readahead_bytes_total.
func TestOperatorCounters(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l, _, _ := prioritizedLayer(t)
	opts := Options{LayerDigest: testLayerDigest, ReadAhead: -1, SequentialPrefetch: -1}

	failures := testutil.ToFloat64(metrics.VerificationFailures)
	r := NewReader(&memSource{blob: l.blob}, opts)
	if _, err := r.ReadAt(ctx, l.files["a"], make([]byte, 30_000), 0); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(metrics.VerificationFailures) - failures; n != 0 {
		t.Errorf("good chunks counted %v verification failures, want 0", n)
	}
	file := append([]Chunk(nil), l.files["b"]...)
	file[0].Digest, file[1].Digest = digest.FromString("x"), digest.FromString("y")
	if _, err := r.ReadAt(ctx, file, make([]byte, 20_000), 0); !errors.Is(err, ErrVerification) {
		t.Fatalf("ReadAt = %v, want a verification failure", err)
	}
	if n := testutil.ToFloat64(metrics.VerificationFailures) - failures; n != 2 {
		t.Errorf("two chunks that failed their digests counted %v verification failures, want 2", n)
	}

	// A read that fetches ahead counts what no read asked for.
	var all []Chunk
	for _, name := range []string{"a", "b", "c"} {
		all = append(all, l.files[name]...)
	}
	ahead := testutil.ToFloat64(metrics.ReadAheadBytes)
	src := &memSource{blob: l.blob}
	r = NewReader(src, Options{LayerDigest: testLayerDigest, Layout: NewLayout(all), SequentialPrefetch: -1})
	if _, err := r.ReadAt(ctx, l.files["a"], make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	var fetched int64
	for _, sp := range src.spans() {
		fetched += sp.len
	}
	if want := fetched - l.files["a"][0].BlobSize; want <= 0 || testutil.ToFloat64(metrics.ReadAheadBytes)-ahead != float64(want) {
		t.Errorf("a read of one chunk that fetched %d bytes counted %v bytes read ahead, want %d", fetched, testutil.ToFloat64(metrics.ReadAheadBytes)-ahead, want)
	}

	// A tier of one chunk: each chunk read evicts the one before.
	evictions := testutil.ToFloat64(metrics.MemoryCacheEvictions)
	opts.Memory = NewMemory(l.files["c"][0].Size)
	r = NewReader(&memSource{blob: l.blob}, opts)
	for _, c := range l.files["c"] {
		if _, err := r.ReadAt(ctx, l.files["c"], make([]byte, 10), c.Offset); err != nil {
			t.Fatal(err)
		}
	}
	if n := testutil.ToFloat64(metrics.MemoryCacheEvictions) - evictions; n != float64(len(l.files["c"])-1) {
		t.Errorf("%d chunks through a tier of one counted %v evictions, want %d", len(l.files["c"]), n, len(l.files["c"])-1)
	}
}
