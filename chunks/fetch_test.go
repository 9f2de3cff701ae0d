package chunks

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/containerd/log/logtest"
	"github.com/containerd/stargz-snapshotter/estargz"
)

// TestSharedStreamFetchedOnce guards merging for chunks that share a
// compressed stream (estargz WithMinChunkSize): a read of such a file
// fetches each stream once, not once per chunk, even without read-ahead.
func TestSharedStreamFetchedOnce(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := buildLayer(t, []testFile{{"f", fileData(100_000, 12)}},
		estargz.WithChunkSize(1000), estargz.WithMinChunkSize(20_000))
	file := l.files["f"]
	streams := map[int64]bool{}
	for _, c := range file {
		streams[c.BlobOffset] = true
	}
	if len(streams) < 2 || len(streams) >= len(file)/4 {
		t.Fatalf("%d chunks in %d streams: the case is not exercised", len(file), len(streams))
	}
	for _, tc := range []struct {
		name       string
		maxRequest int64
		wantCalls  int
	}{
		{"one request", 1 << 20, 1},
		{"one stream each", 1, len(streams)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &memSource{blob: l.blob}
			r := NewReader(src, Options{MaxRequestSize: tc.maxRequest, LayerDigest: testLayerDigest})
			p := make([]byte, len(l.data["f"]))
			if n, err := r.ReadAt(ctx, file, p, 0); n != len(p) || err != nil || !bytes.Equal(p, l.data["f"]) {
				t.Fatalf("ReadAt = %d, %v (bytes equal %v)", n, err, bytes.Equal(p, l.data["f"]))
			}
			if n := len(src.spans()); n != tc.wantCalls {
				t.Errorf("%d requests for %d chunks in %d streams, want %d", n, len(file), len(streams), tc.wantCalls)
			}
		})
	}
}

// TestRangeBuffersReused: range buffers go back to the pool after a fetch,
// and no chunk handed out keeps pointing into one: chunks fetched earlier
// and held in memory stay intact while later fetches reuse the buffers.
func TestRangeBuffersReused(t *testing.T) {
	data := fileData(3<<20, 5)
	l := buildLayer(t, []testFile{{"f", data}}, estargz.WithChunkSize(1<<20))
	r := NewReader(&memSource{blob: l.blob}, Options{MemoryCacheSize: 64 << 20, ReadAhead: -1, SequentialPrefetch: -1, LayerDigest: testLayerDigest})
	ctx := context.Background()
	file := l.files["f"]
	p := make([]byte, 1<<20)
	for off := int64(0); off < int64(len(data)); off += 1 << 20 {
		if _, err := r.ReadAt(ctx, file, p, off); err != nil && err != io.EOF {
			t.Fatal(err)
		}
	}
	// Every chunk is now served from memory: each must still hold its
	// own bytes, not those of the request that reused its buffer.
	for off := int64(0); off < int64(len(data)); off += 1 << 20 {
		if _, err := r.ReadAt(ctx, file, p, off); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(p, data[off:off+1<<20]) {
			t.Fatalf("chunk at %d changed after later fetches", off)
		}
	}
	if b := rangeBuffer(DefaultMaxRequestSize + 1); len(b) != DefaultMaxRequestSize+1 {
		t.Errorf("rangeBuffer above the pooled size: %d bytes", len(b))
	}
	if b := rangeBuffer(10); len(b) != 10 || cap(b) != DefaultMaxRequestSize {
		t.Errorf("rangeBuffer(10): len %d cap %d, want a pooled buffer", len(b), cap(b))
	}
}
