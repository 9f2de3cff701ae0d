package chunks

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/containerd/log/logtest"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lazyfs/lazyfs/cache"
	"github.com/lazyfs/lazyfs/metrics"
)

var errRegistryDown = errors.New("registry down")

// registryDown fails every call, as a stopped registry does.
func registryDown(context.Context, int, []byte, int64) error { return errRegistryDown }

func diskLayer(t *testing.T) *testLayer {
	return buildLayer(t, []testFile{
		{"etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\n")},
		{"bin/tool", fileData(40_000, 1)},
		{"lib/big", fileData(150_000, 2)},
	}, estargz.WithChunkSize(8000))
}

func openDisk(t testing.TB, dir string) *cache.Store {
	t.Helper()
	s, err := cache.Open(logtest.WithT(context.Background(), t), dir, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sortedNames(l *testLayer) []string {
	var names []string
	for name := range l.data { // the layer's files, not its landmark
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// TestDiskTierSurvivesRestart: what one worker fetched is served to the
// next (a fresh Reader: empty memory) from disk alone, with the registry
// down, and the memory tier is asked before the disk.
func TestDiskTierSurvivesRestart(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := diskLayer(t)
	dir := t.TempDir()

	disk := openDisk(t, dir)
	first := NewReader(&memSource{blob: l.blob}, Options{LayerDigest: testLayerDigest, Disk: disk})
	for _, name := range sortedNames(l) {
		readAll(ctx, t, first, l.files[name], 4096)
	}
	// Read again: served from memory, the disk is not asked.
	hits, misses := testutil.ToFloat64(metrics.CacheHits), testutil.ToFloat64(metrics.CacheMisses)
	for _, name := range sortedNames(l) {
		readAll(ctx, t, first, l.files[name], 4096)
	}
	if h, m := testutil.ToFloat64(metrics.CacheHits)-hits, testutil.ToFloat64(metrics.CacheMisses)-misses; h != 0 || m != 0 {
		t.Errorf("reads served from memory asked the disk: %v hits, %v misses", h, m)
	}
	disk.Close() // as a worker that exits: its writes are done

	down := &memSource{blob: l.blob, hook: registryDown}
	second := NewReader(down, Options{LayerDigest: testLayerDigest, Disk: openDisk(t, dir)})
	hits = testutil.ToFloat64(metrics.CacheHits)
	for _, name := range sortedNames(l) {
		if got := readAll(ctx, t, second, l.files[name], 4096); !bytes.Equal(got, l.data[name]) {
			t.Errorf("%s: %d bytes read from the disk tier differ from the file", name, len(got))
		}
	}
	if calls := len(down.spans()); calls != 0 {
		t.Errorf("the registry got %d requests for chunks on disk", calls)
	}
	if h := testutil.ToFloat64(metrics.CacheHits) - hits; h == 0 {
		t.Error("no disk cache hit counted")
	}
}

// TestCorruptDiskChunkRefetched: a chunk damaged on disk is not served: the
// file is deleted, counted, the chunk fetched from the registry and written
// again.
func TestCorruptDiskChunkRefetched(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := diskLayer(t)
	file := l.files["bin/tool"]
	dir := t.TempDir()

	disk := openDisk(t, dir)
	readAll(ctx, t, NewReader(&memSource{blob: l.blob}, Options{LayerDigest: testLayerDigest, Disk: disk}), file, 4096)
	disk.Flush()
	enc := file[0].Digest.Encoded()
	path := filepath.Join(dir, "chunks", "sha256", enc[:2], enc)
	bad, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad[0] ^= 0xff
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}

	src := &memSource{blob: l.blob}
	// No read-ahead: the one request counted is the refetch.
	r := NewReader(src, Options{LayerDigest: testLayerDigest, Disk: disk, ReadAhead: -1, SequentialPrefetch: -1})
	corrupt := testutil.ToFloat64(metrics.CacheCorrupt)
	p := make([]byte, file[0].Size)
	if n, err := r.ReadAt(ctx, file, p, 0); err != nil || !bytes.Equal(p[:n], l.data["bin/tool"][:n]) {
		t.Fatalf("ReadAt over a corrupt cache file: %d bytes, %v, equal=%v", n, err, bytes.Equal(p[:n], l.data["bin/tool"][:n]))
	}
	if n := testutil.ToFloat64(metrics.CacheCorrupt) - corrupt; n != 1 {
		t.Errorf("lazyfs_cache_corrupt_total grew by %v, want 1", n)
	}
	if calls := len(src.spans()); calls != 1 {
		t.Errorf("%d registry requests, want 1 (the refetch of the corrupt chunk)", calls)
	}
	disk.Flush()
	if got, err := os.ReadFile(path); err != nil || bytes.Equal(got, bad) {
		t.Errorf("cache file after the refetch: %v, still corrupt: %v", err, bytes.Equal(got, bad))
	}
}

// TestReadAheadTakesNeighboursFromDisk: read-ahead does not fetch from the
// registry a neighbour the disk cache holds; it serves it from disk.
func TestReadAheadTakesNeighboursFromDisk(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := buildLayer(t, []testFile{
		{"a", fileData(3000, 1)},
		{"b", fileData(3000, 2)},
	}, estargz.WithChunkSize(8000))
	var all []Chunk
	for _, f := range l.files {
		all = append(all, f...)
	}
	layout := NewLayout(all)
	a, b := l.files["a"], l.files["b"]
	if a[0].BlobOffset+a[0].BlobSize != b[0].BlobOffset {
		t.Fatalf("a (%d+%d) and b (%d) are not neighbours in the blob", a[0].BlobOffset, a[0].BlobSize, b[0].BlobOffset)
	}
	dir := t.TempDir()
	disk := openDisk(t, dir)
	// b alone reaches the disk.
	readAll(ctx, t, NewReader(&memSource{blob: l.blob}, Options{LayerDigest: testLayerDigest, Disk: disk, ReadAhead: -1}), b, 4096)
	disk.Flush()

	src := &memSource{blob: l.blob}
	r := NewReader(src, Options{LayerDigest: testLayerDigest, Disk: disk, Layout: layout, ReadAhead: 1 << 20})
	if got := readAll(ctx, t, r, a, 4096); !bytes.Equal(got, l.data["a"]) {
		t.Fatal("a read wrong")
	}
	for _, sp := range src.spans() {
		if sp.off+sp.len > b[0].BlobOffset {
			t.Errorf("request [%d, %d) reaches b at %d, which is on disk", sp.off, sp.off+sp.len, b[0].BlobOffset)
		}
	}
	// b was taken from disk into memory along the way: no request for it.
	calls := len(src.spans())
	if got := readAll(ctx, t, r, b, 4096); !bytes.Equal(got, l.data["b"]) || len(src.spans()) != calls {
		t.Errorf("b: equal %v, %d more requests", bytes.Equal(got, l.data["b"]), len(src.spans())-calls)
	}
}
