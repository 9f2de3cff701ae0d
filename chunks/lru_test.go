package chunks

import (
	"bytes"
	"context"
	"testing"

	"github.com/containerd/log/logtest"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"
)

func TestLRU(t *testing.T) {
	d := func(s string) digest.Digest { return digest.FromString(s) }
	c := newLRU(10)
	c.add(d("a"), []byte("aaaa"))
	c.add(d("b"), []byte("bbbb"))
	if _, ok := c.get(d("a")); !ok { // a is now the most recently used
		t.Fatal("a missing")
	}
	c.add(d("c"), []byte("cccc")) // 12 > 10: evicts b, the least recently used
	for _, tc := range []struct {
		key  string
		want bool
	}{{"a", true}, {"b", false}, {"c", true}} {
		if _, ok := c.get(d(tc.key)); ok != tc.want {
			t.Errorf("get(%s) present = %v, want %v", tc.key, ok, tc.want)
		}
	}
	c.add(d("big"), bytes.Repeat([]byte("x"), 11)) // larger than the bound: not kept
	if _, ok := c.get(d("big")); ok || c.size != 8 {
		t.Errorf("oversized chunk: kept %v, size %d; want not kept, size 8", ok, c.size)
	}
	c.add(d("a"), []byte("aaaa")) // already there: no double count
	if c.size != 8 || c.order.Len() != 2 {
		t.Errorf("size %d with %d entries, want 8 with 2", c.size, c.order.Len())
	}
}

func TestMemoryCacheBound(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := buildLayer(t, []testFile{{"f", fileData(200_000, 10)}}, estargz.WithChunkSize(10_000))
	file := l.files["f"]
	src := &memSource{blob: l.blob}
	const bound = 30_000 // three chunks
	r := NewReader(src, Options{MemoryCacheSize: bound, LayerDigest: testLayerDigest})

	p := make([]byte, 4096)
	for off := int64(0); off < int64(len(l.data["f"])); off += int64(len(p)) {
		if _, err := r.ReadAt(ctx, file, p, off); err != nil && off+int64(len(p)) < int64(len(l.data["f"])) {
			t.Fatal(err)
		}
		size := r.cache.Size()
		if size > bound {
			t.Fatalf("cache holds %d bytes, bound is %d", size, bound)
		}
	}
	for i, n := range fetchesOf(src, file) {
		if n != 1 {
			t.Fatalf("chunk %d fetched %d times, want once", i, n)
		}
	}

	calls := len(src.spans())
	last := file[len(file)-1]
	if _, err := r.ReadAt(ctx, file, make([]byte, 10), last.Offset); err != nil {
		t.Fatal(err)
	}
	if len(src.spans()) != calls {
		t.Error("a recently used chunk was fetched again")
	}
	if _, err := r.ReadAt(ctx, file, make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	if len(src.spans()) != calls+1 {
		t.Error("an evicted chunk was not fetched again")
	}

	// A negative size disables the cache.
	src = &memSource{blob: l.blob}
	r = NewReader(src, Options{MemoryCacheSize: -1, LayerDigest: testLayerDigest})
	for range 3 {
		if _, err := r.ReadAt(ctx, file, make([]byte, 10), 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(src.spans()); n != 3 {
		t.Errorf("without cache: %d fetches for 3 reads, want 3", n)
	}
}
