package chunks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log/logtest"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"
)

const testLayerDigest = digest.Digest("sha256:1111111111111111111111111111111111111111111111111111111111111111")

// readAll reads a whole file in pieces of size piece.
func readAll(ctx context.Context, t testing.TB, r *Reader, file []Chunk, piece int) []byte {
	var out []byte
	p := make([]byte, piece)
	for off := int64(0); ; off += int64(piece) {
		n, err := r.ReadAt(ctx, file, p, off)
		out = append(out, p[:n]...)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("ReadAt(%d bytes at %d): %v", piece, off, err)
		}
	}
}

func TestReadAt(t *testing.T) {
	files := []testFile{
		{"tiny", []byte("hello, lazy world\n")},
		{"one-chunk", fileData(999, 1)},
		{"exact", fileData(3000, 2)},
		{"big", fileData(123_457, 3)},
		{"empty", nil},
	}
	for _, layout := range []struct {
		name string
		opts []estargz.Option
	}{
		{"one stream per chunk", []estargz.Option{estargz.WithChunkSize(1000)}},
		// Small chunks share gzip streams: InnerOffset is used.
		{"shared streams", []estargz.Option{estargz.WithChunkSize(1000), estargz.WithMinChunkSize(5000)}},
	} {
		t.Run(layout.name, func(t *testing.T) {
			ctx := logtest.WithT(context.Background(), t)
			l := buildLayer(t, files, layout.opts...)
			if strings.HasPrefix(layout.name, "shared") && !hasInnerOffset(l) {
				t.Fatal("layer has no chunk with an InnerOffset: the case is not exercised")
			}
			if n := len(l.files["big"]); n < 100 {
				t.Fatalf("big file has %d chunks, want many", n)
			}
			r := NewReader(&memSource{blob: l.blob}, Options{LayerDigest: testLayerDigest})
			for name, want := range l.data {
				file := l.files[name]
				size := int64(len(want))
				for _, tc := range []struct{ off, len int64 }{
					{0, 1}, {0, size}, {1, 999}, {999, 2}, {123, 4567}, {size - 1, 10},
					{size / 2, size}, {size, 1}, {size + 10, 1}, {7, 0},
				} {
					if tc.off < 0 || tc.len < 0 {
						continue
					}
					p := bytes.Repeat([]byte{0xAA}, int(tc.len))
					n, err := r.ReadAt(ctx, file, p, tc.off)
					wantN := max(0, min(tc.len, size-tc.off))
					wantEOF := tc.off >= size || tc.off+tc.len > size
					if int64(n) != wantN || (err == io.EOF) != wantEOF || (err != nil && err != io.EOF) {
						t.Fatalf("%s: ReadAt(%d bytes at %d) = %d, %v; want %d, EOF %v", name, tc.len, tc.off, n, err, wantN, wantEOF)
					}
					if n > 0 && !bytes.Equal(p[:n], want[tc.off:tc.off+int64(n)]) {
						t.Fatalf("%s: ReadAt(%d bytes at %d): wrong bytes", name, tc.len, tc.off)
					}
				}
				if got := readAll(ctx, t, r, file, 4093); !bytes.Equal(got, want) {
					t.Fatalf("%s: sequential read differs from the file", name)
				}
			}
		})
	}
}

func chunkAt(file []Chunk, blobOffset int64) Chunk {
	for _, c := range file {
		if c.BlobOffset == blobOffset {
			return c
		}
	}
	panic(fmt.Sprintf("no chunk at blob offset %d", blobOffset))
}

func hasInnerOffset(l *testLayer) bool {
	for _, f := range l.files {
		for _, c := range f {
			if c.InnerOffset > 0 {
				return true
			}
		}
	}
	return false
}

func TestSequentialReadFetchesEachChunkOnce(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := buildLayer(t, []testFile{{"f", fileData(3<<19, 4)}}, estargz.WithChunkSize(100_000))
	src := &memSource{blob: l.blob}
	r := NewReader(src, Options{LayerDigest: testLayerDigest})
	file := l.files["f"]

	if got := readAll(ctx, t, r, file, 128<<10); !bytes.Equal(got, l.data["f"]) {
		t.Fatal("bytes differ from the file")
	}
	for i, n := range fetchesOf(src, file) {
		if n != 1 {
			t.Errorf("chunk %d (file offset %d) fetched %d times, want once", i, file[i].Offset, n)
		}
	}
	if len(src.spans()) > len(file) {
		t.Errorf("%d source calls for %d chunks", len(src.spans()), len(file))
	}
}

func TestMergedRequests(t *testing.T) {
	l := buildLayer(t, []testFile{{"f", fileData(200_000, 5)}}, estargz.WithChunkSize(10_000))
	file := l.files["f"]
	var total, largest int64
	for _, c := range file {
		total += c.BlobSize
		largest = max(largest, c.BlobSize)
	}
	for _, tc := range []struct {
		name       string
		maxRequest int64
		parallel   int
	}{
		{"one request", total, 1},
		{"bounded requests", 3 * largest, 2},
		{"one chunk each", 1, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := logtest.WithT(context.Background(), t)
			src := &memSource{blob: l.blob, hook: func(context.Context, int, []byte, int64) error {
				time.Sleep(2 * time.Millisecond) // let parallel requests overlap
				return nil
			}}
			r := NewReader(src, Options{MaxRequestSize: tc.maxRequest, Parallel: tc.parallel, LayerDigest: testLayerDigest})
			p := make([]byte, len(l.data["f"]))
			if n, err := r.ReadAt(ctx, file, p, 0); n != len(p) || err != nil || !bytes.Equal(p, l.data["f"]) {
				t.Fatalf("ReadAt = %d, %v (bytes equal %v)", n, err, bytes.Equal(p, l.data["f"]))
			}
			spans := src.spans()
			var fetched int64
			for _, s := range spans {
				fetched += s.len
				if s.len > tc.maxRequest && s.len > largest {
					t.Errorf("request of %d bytes exceeds MaxRequestSize %d", s.len, tc.maxRequest)
				}
			}
			if fetched != total {
				t.Errorf("fetched %d compressed bytes, the chunks have %d", fetched, total)
			}
			// Greedy merging: a request ends only where the next chunk
			// would not fit in it any more.
			sort.Slice(spans, func(i, j int) bool { return spans[i].off < spans[j].off })
			for i := 0; i+1 < len(spans); i++ {
				next := chunkAt(file, spans[i+1].off)
				if spans[i].off+spans[i].len == next.BlobOffset && spans[i].len+next.BlobSize <= tc.maxRequest {
					t.Errorf("requests at %d and %d could have been one", spans[i].off, spans[i+1].off)
				}
			}
			if tc.name == "one request" && len(spans) != 1 {
				t.Errorf("%d requests, want 1", len(spans))
			}
			if tc.name == "one chunk each" && len(spans) != len(file) {
				t.Errorf("%d requests, want %d", len(spans), len(file))
			}
			if m := int(src.maxActive.Load()); m > tc.parallel {
				t.Errorf("%d requests at once, Parallel is %d", m, tc.parallel)
			}
			if tc.parallel > 1 && len(spans) > tc.parallel && src.maxActive.Load() < 2 {
				t.Errorf("requests never ran in parallel")
			}
		})
	}
}

func TestConcurrentReadersShareFetches(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := buildLayer(t, []testFile{{"f", fileData(1<<20, 6)}}, estargz.WithChunkSize(50_000))
	src := &memSource{blob: l.blob, hook: func(context.Context, int, []byte, int64) error {
		time.Sleep(time.Millisecond) // widen the window in which fetches overlap
		return nil
	}}
	r := NewReader(src, Options{MaxRequestSize: 200_000, LayerDigest: testLayerDigest})
	file := l.files["f"]

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			piece := []int{4096, 128 << 10, 77_777, 1 << 20}[i%4]
			p := make([]byte, piece)
			// Half the readers start in the middle and wrap around.
			start := int64(0)
			if i%2 == 1 {
				start = int64(len(l.data["f"]) / 2)
			}
			size := int64(len(l.data["f"]))
			for done := int64(0); done < size; done += int64(piece) {
				off := (start + done) % size
				n, err := r.ReadAt(ctx, file, p, off)
				if err != nil && err != io.EOF {
					errs <- err
					return
				}
				if !bytes.Equal(p[:n], l.data["f"][off:off+int64(n)]) {
					errs <- fmt.Errorf("reader %d: wrong bytes at %d", i, off)
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
	for i, n := range fetchesOf(src, file) {
		if n != 1 {
			t.Errorf("chunk %d fetched %d times by 16 concurrent readers, want once", i, n)
		}
	}
}

// corruptByte flips one byte in the middle of what the source returns.
func corruptByte(_ context.Context, _ int, p []byte, _ int64) error {
	p[len(p)/2] ^= 0x40
	return nil
}

func TestVerification(t *testing.T) {
	l := buildLayer(t, []testFile{{"f", fileData(50_000, 7)}}, estargz.WithChunkSize(10_000))
	file := l.files["f"]
	errFetch := fmt.Errorf("registry exploded: %w", errdefs.ErrUnavailable)
	for _, tc := range []struct {
		name      string
		hook      func(ctx context.Context, n int, p []byte, off int64) error
		wantErr   error // nil: the read succeeds
		wantCalls int
	}{
		// One attempt per range: retries are the source's (package
		// remote), never stacked here.
		{name: "always corrupt", hook: corruptByte, wantErr: ErrVerification, wantCalls: 1},
		{name: "gzip header corrupt", hook: func(_ context.Context, _ int, p []byte, _ int64) error {
			p[0] ^= 0xff
			return nil
		}, wantErr: ErrVerification, wantCalls: 1},
		{name: "corrupt once", hook: func(ctx context.Context, n int, p []byte, off int64) error {
			if n == 1 {
				return corruptByte(ctx, n, p, off)
			}
			return nil
		}, wantErr: ErrVerification, wantCalls: 1},
		{name: "fetch fails", hook: func(context.Context, int, []byte, int64) error { return errFetch },
			wantErr: ErrUnavailable, wantCalls: 1},
		{name: "fetch fails once", hook: func(_ context.Context, n int, _ []byte, _ int64) error {
			if n == 1 {
				return errFetch
			}
			return nil
		}, wantErr: ErrUnavailable, wantCalls: 1},
		{name: "fine", wantCalls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := logtest.WithT(context.Background(), t)
			src := &memSource{blob: l.blob, hook: tc.hook}
			r := NewReader(src, Options{LayerDigest: testLayerDigest})
			c := file[2] // a chunk in the middle of the file
			p := bytes.Repeat([]byte{0xAA}, int(c.Size-20))
			n, err := r.ReadAt(ctx, file, p, c.Offset+10)
			if got := len(src.spans()); got != tc.wantCalls {
				t.Errorf("%d source calls, want %d", got, tc.wantCalls)
			}
			if tc.wantErr == nil {
				if err != nil || n != len(p) || !bytes.Equal(p, l.data["f"][c.Offset+10:c.Offset+10+int64(len(p))]) {
					t.Fatalf("ReadAt = %d, %v; want the file's bytes", n, err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || n != 0 {
				t.Fatalf("ReadAt = %d, %v; want 0, %v", n, err, tc.wantErr)
			}
			if !bytes.Equal(p, bytes.Repeat([]byte{0xAA}, len(p))) {
				t.Error("p was written to although the read failed")
			}
			for _, s := range []string{testLayerDigest.String(), fmt.Sprintf("blob offset %d", c.BlobOffset), fmt.Sprintf("file offset %d", c.Offset)} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %q", err, s)
				}
			}
			// A failed chunk is not cached: the next read fetches again.
			before := len(src.spans())
			_, _ = r.ReadAt(ctx, file, p, c.Offset)
			if len(src.spans()) == before {
				t.Error("a failed chunk was served from the cache")
			}
		})
	}
	if !errdefs.IsDataLoss(ErrVerification) {
		t.Error("ErrVerification is not of class ErrDataLoss")
	}
}

func TestShortSource(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := buildLayer(t, []testFile{{"f", fileData(5000, 8)}})
	file := l.files["f"]
	// The blob is cut in the middle of the chunk's stream.
	src := &memSource{blob: l.blob[:file[0].BlobOffset+file[0].BlobSize/2]}
	r := NewReader(src, Options{LayerDigest: testLayerDigest})
	if _, err := r.ReadAt(ctx, file, make([]byte, 10), 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short source: err = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestCancelledFetcherDoesNotFailWaiters(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := buildLayer(t, []testFile{{"f", fileData(5000, 9)}})
	file := l.files["f"]
	started := make(chan struct{})
	src := &memSource{blob: l.blob, hook: func(ctx context.Context, n int, _ []byte, _ int64) error {
		if n == 1 { // the first fetch hangs until its reader gives up
			close(started)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}}
	r := NewReader(src, Options{LayerDigest: testLayerDigest})

	actx, cancel := context.WithCancel(ctx)
	aErr := make(chan error, 1)
	go func() {
		_, err := r.ReadAt(actx, file, make([]byte, 100), 0)
		aErr <- err
	}()
	<-started
	bErr := make(chan error, 1)
	p := make([]byte, 100)
	go func() {
		_, err := r.ReadAt(ctx, file, p, 0)
		bErr <- err
	}()
	time.Sleep(20 * time.Millisecond) // let B wait for A's fetch
	cancel()
	if err := <-aErr; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled reader: err = %v, want context.Canceled", err)
	}
	if err := <-bErr; err != nil || !bytes.Equal(p, l.data["f"][:100]) {
		t.Errorf("waiting reader: err = %v, want the bytes", err)
	}
	if n := len(src.spans()); n != 2 {
		t.Errorf("%d source calls, want 2 (the cancelled one, then the waiter's)", n)
	}
}

func TestInvalidChunkLists(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	d := digest.FromString("x")
	ok := Chunk{Offset: 0, Size: 10, BlobOffset: 0, BlobSize: 20, Digest: d}
	for _, tc := range []struct {
		name string
		file []Chunk
		off  int64
	}{
		{"gap", []Chunk{ok, {Offset: 15, Size: 10, BlobOffset: 20, BlobSize: 20, Digest: d}}, 5},
		{"overlap", []Chunk{ok, {Offset: 5, Size: 10, BlobOffset: 20, BlobSize: 20, Digest: d}}, 5},
		{"not from zero", []Chunk{{Offset: 5, Size: 10, BlobSize: 20, Digest: d}}, 0},
		{"zero size", []Chunk{ok, {Offset: 10, Size: 0, BlobOffset: 20, BlobSize: 20, Digest: d}, {Offset: 10, Size: 10, BlobOffset: 40, BlobSize: 20, Digest: d}}, 5},
		{"no blob size", []Chunk{{Offset: 0, Size: 10, Digest: d}}, 0},
		{"negative offset", []Chunk{ok}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &memSource{blob: make([]byte, 100)}
			r := NewReader(src, Options{LayerDigest: testLayerDigest})
			if _, err := r.ReadAt(ctx, tc.file, make([]byte, 20), tc.off); !errdefs.IsInvalidArgument(err) {
				t.Errorf("err = %v, want invalid argument", err)
			}
			if n := len(src.spans()); n != 0 {
				t.Errorf("%d source calls for an invalid chunk list", n)
			}
		})
	}
}

// retryingSource is a VerifyingSource that, like package remote, retries an
// answer its caller's check refuses, up to attempts times.
type retryingSource struct {
	*memSource
	attempts int
}

func (s *retryingSource) ReadAtVerified(ctx context.Context, p []byte, off int64, verify func([]byte) error) (int, error) {
	var err error
	for range s.attempts {
		var n int
		n, err = s.ReadAt(ctx, p, off)
		if err != nil && err != io.EOF {
			return 0, err
		}
		if verify == nil {
			return n, err
		}
		if err = verify(p[:n]); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("gave up after %d corrupt answers: %w", s.attempts, err)
}

// TestVerificationRetriedBySource guards that a chunk failing its digest is
// handed back to a VerifyingSource to retry (the registry's flipped bytes
// never reach a reader as EIO while a retry can fix them), and that a
// source giving up on corrupt answers is a verification failure, not an
// outage.
func TestVerificationRetriedBySource(t *testing.T) {
	l := buildLayer(t, []testFile{{"f", fileData(50_000, 7)}}, estargz.WithChunkSize(10_000))
	file := l.files["f"]
	c := file[2]
	want := l.data["f"][c.Offset : c.Offset+c.Size]
	corruptFirst := func(ctx context.Context, n int, p []byte, off int64) error {
		if n == 1 {
			return corruptByte(ctx, n, p, off)
		}
		return nil
	}
	t.Run("corrupt once", func(t *testing.T) {
		ctx := logtest.WithT(context.Background(), t)
		src := &retryingSource{memSource: &memSource{blob: l.blob, hook: corruptFirst}, attempts: 3}
		r := NewReader(src, Options{LayerDigest: testLayerDigest})
		p := make([]byte, c.Size)
		n, err := r.ReadAt(ctx, file, p, c.Offset)
		if err != nil || n != len(p) || !bytes.Equal(p, want) {
			t.Fatalf("ReadAt = %d, %v; want the chunk's bytes after the source's retry", n, err)
		}
		if got := len(src.spans()); got != 2 {
			t.Errorf("%d source calls, want 2 (the corrupt answer and its retry)", got)
		}
	})
	t.Run("always corrupt", func(t *testing.T) {
		ctx := logtest.WithT(context.Background(), t)
		src := &retryingSource{memSource: &memSource{blob: l.blob, hook: corruptByte}, attempts: 3}
		r := NewReader(src, Options{LayerDigest: testLayerDigest})
		p := make([]byte, c.Size)
		n, err := r.ReadAt(ctx, file, p, c.Offset)
		if n != 0 || !errors.Is(err, ErrVerification) || errors.Is(err, ErrUnavailable) {
			t.Fatalf("ReadAt = %d, %v; want 0 and a verification failure (not an outage)", n, err)
		}
		if got := len(src.spans()); got != 3 {
			t.Errorf("%d source calls, want 3", got)
		}
	})
}

// TestVerifiedAnswerThenOutage guards fetchGroup's reading of a source's
// give-up: a source that refused a corrupt answer and then could not reach
// the registry failed for an outage (ErrUnavailable, a later read may
// succeed), not for the corrupt bytes of an answer it already dropped.
func TestVerifiedAnswerThenOutage(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := buildLayer(t, []testFile{{"f", fileData(50_000, 8)}}, estargz.WithChunkSize(10_000))
	file := l.files["f"]
	c := file[2]
	src := &retryingSource{memSource: &memSource{blob: l.blob, hook: func(ctx context.Context, n int, p []byte, off int64) error {
		if n == 1 {
			return corruptByte(ctx, n, p, off)
		}
		return fmt.Errorf("registry down: %w", errdefs.ErrUnavailable)
	}}, attempts: 3}
	r := NewReader(src, Options{LayerDigest: testLayerDigest})
	n, err := r.ReadAt(ctx, file, make([]byte, c.Size), c.Offset)
	if n != 0 || !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrVerification) {
		t.Fatalf("ReadAt = %d, %v; want 0 and an outage (not a verification failure)", n, err)
	}
}

// racingSource is a VerifyingSource whose answer is checked twice, as two
// hedged attempts of package remote may be: the good answer first, then a
// corrupt one that lost the race but was still being checked.
type racingSource struct{ *memSource }

func (s racingSource) ReadAtVerified(ctx context.Context, p []byte, off int64, verify func([]byte) error) (int, error) {
	n, err := s.ReadAt(ctx, p, off)
	if err != nil && err != io.EOF {
		return 0, err
	}
	if err := verify(append([]byte(nil), p[:n]...)); err != nil {
		return 0, err
	}
	bad := append([]byte(nil), p[:n]...)
	for i := range bad {
		bad[i] ^= 0xFF
	}
	_ = verify(bad) // the loser's verdict: its bytes are not the answer
	return n, err
}

// TestHedgedLoserNotServed guards which decoded answer fetchGroup keeps:
// the one that verified, never a corrupt one checked after it.
func TestHedgedLoserNotServed(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := buildLayer(t, []testFile{{"f", fileData(30_000, 9)}}, estargz.WithChunkSize(10_000))
	file := l.files["f"]
	r := NewReader(racingSource{&memSource{blob: l.blob}}, Options{LayerDigest: testLayerDigest})
	p := make([]byte, 30_000)
	if n, err := r.ReadAt(ctx, file, p, 0); n != len(p) || err != nil || !bytes.Equal(p, l.data["f"]) {
		t.Fatalf("ReadAt = %d, %v; want the verified answer's bytes", n, err)
	}
}
