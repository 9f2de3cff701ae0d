package chunks

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestNewLayout(t *testing.T) {
	d := func(i int) digest.Digest { return digest.FromString(fmt.Sprint(i)) }
	a := Chunk{Offset: 0, Size: 10, BlobOffset: 100, BlobSize: 50, Digest: d(1)}
	b := Chunk{Offset: 10, Size: 10, BlobOffset: 150, BlobSize: 60, Digest: d(2)}
	// c1 and c2 share one compressed stream.
	c1 := Chunk{Offset: 0, Size: 5, BlobOffset: 210, BlobSize: 30, Digest: d(3)}
	c2 := Chunk{Offset: 0, Size: 7, BlobOffset: 210, BlobSize: 30, InnerOffset: 5, Digest: d(4)}
	for _, tc := range []struct {
		name string
		in   []Chunk
		want []Chunk
	}{
		{"empty", nil, nil},
		{"sorted by blob offset, then inner offset", []Chunk{c2, b, c1, a}, []Chunk{a, b, c1, c2}},
		// A hard link's target listed twice, an identical chunk of
		// another file at the same place.
		{"duplicates kept once", []Chunk{a, b, a, c1, b, {Offset: 99, Size: 10, BlobOffset: 100, BlobSize: 50, Digest: d(1)}}, []Chunk{a, b, c1}},
		{"unusable chunks left out", []Chunk{
			a,
			{Size: 0, BlobOffset: 300, BlobSize: 10, Digest: d(5)},
			{Size: 10, BlobOffset: 300, BlobSize: 0, Digest: d(6)},
			{Size: 10, BlobOffset: -1, BlobSize: 10, Digest: d(7)},
			{Size: 10, BlobOffset: 300, BlobSize: 10, InnerOffset: -1, Digest: d(8)},
			{Size: 10, BlobOffset: 300, BlobSize: 10},
		}, []Chunk{a}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.in)
			l := NewLayout(in)
			if !slices.Equal(in, tc.in) {
				t.Error("NewLayout modified its input")
			}
			var got []Chunk
			for i := range l.Len() {
				got = append(got, l.chunk(i))
			}
			for i := range tc.want {
				tc.want[i].Offset = 0 // a layout knows no file offsets
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("layout %+v\nwant   %+v", got, tc.want)
			}
		})
	}
}

// layerChunks returns the chunks of a layer of n regular files shaped like
// a distribution's: most files one chunk, one in 50 split into four, each
// with its own digest string, as a TOC decodes them.
func layerChunks(n int) []Chunk {
	all := make([]Chunk, 0, n+n/50*3)
	off := int64(100)
	for i := range n {
		chunks := 1
		if i%50 == 3 {
			chunks = 4
		}
		for c := range chunks {
			size := int64(1000 + i%500*37)
			all = append(all, Chunk{Offset: int64(c) * size, Size: size, BlobOffset: off, BlobSize: size / 3,
				Digest: digest.Digest(fmt.Sprintf("sha256:%064x", i*4+c))})
			off += size / 3
		}
	}
	// The tree lists chunks in path order, not blob order.
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	return all
}

// TestLayoutMemory300k guards the worker's memory budget: the layout of a
// 300,000-file layer is kept for the mount's life next to its tree.
func TestLayoutMemory300k(t *testing.T) {
	const files = 300_000
	const budget = 20 << 20
	all := layerChunks(files)
	base := heapAlloc()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	l := NewLayout(all)
	runtime.ReadMemStats(&after)
	// The chunk list (and its digests) stays alive: the tree keeps it.
	retained := heapAlloc() - base
	t.Logf("layout of %d files, %d chunks: retains %.1f MiB (%.0f bytes a chunk), NewLayout allocated %.1f MiB",
		files, l.Len(), mib(retained), float64(retained)/float64(l.Len()), mib(after.TotalAlloc-before.TotalAlloc))
	if l.Len() != len(all) {
		t.Errorf("layout has %d chunks, want %d", l.Len(), len(all))
	}
	if retained > budget {
		t.Errorf("layout retains %.1f MiB, budget %.1f MiB", mib(retained), mib(budget))
	}
	runtime.KeepAlive(all)
	runtime.KeepAlive(l)
}

// heapAlloc returns the live heap after a full collection.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func BenchmarkNewLayout300k(b *testing.B) {
	all := layerChunks(300_000)
	b.ReportAllocs()
	for b.Loop() {
		NewLayout(all)
	}
}
