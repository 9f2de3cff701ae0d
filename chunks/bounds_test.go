package chunks

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
)

// The tests in this file pin the Reader's internal bounds at their edges
// (request size, read-ahead window, prefetch slack and budget, defaults),
// without a source: each is a pure function of its inputs.

func dg(i int) digest.Digest { return digest.FromString(fmt.Sprint("chunk", i)) }

// adjacent returns n chunks of a file, each size bytes decompressed and
// blob bytes compressed, back to back in the blob from offset 0.
func adjacent(n int, size, blob int64) []Chunk {
	cs := make([]Chunk, n)
	for i := range cs {
		cs[i] = Chunk{Offset: int64(i) * size, Size: size, BlobOffset: int64(i) * blob, BlobSize: blob, Digest: dg(i)}
	}
	return cs
}

func claimsOf(cs []Chunk) []claim {
	out := make([]claim, len(cs))
	for i, c := range cs {
		out[i] = claim{idx: i, c: c}
	}
	return out
}

// offsets lists the blob offsets of groups of claims.
func offsets(gs [][]claim) [][]int64 {
	var out [][]int64
	for _, g := range gs {
		var o []int64
		for _, cl := range g {
			o = append(o, cl.c.BlobOffset)
		}
		out = append(out, o)
	}
	return out
}

func TestGroupsBound(t *testing.T) {
	shared := []Chunk{
		{Offset: 0, Size: 5, BlobOffset: 0, BlobSize: 10, Digest: dg(1)},
		{Offset: 5, Size: 5, BlobOffset: 0, BlobSize: 10, InnerOffset: 5, Digest: dg(2)},
		{Offset: 10, Size: 5, BlobOffset: 10, BlobSize: 10, Digest: dg(3)},
	}
	gap := adjacent(3, 10, 10)
	gap[2].BlobOffset = 21
	for _, tc := range []struct {
		name       string
		cs         []Chunk
		maxRequest int64
		want       string
	}{
		{"exactly two per request", adjacent(5, 10, 10), 20, "[[0 10] [20 30] [40]]"},
		{"one byte short of two", adjacent(3, 10, 10), 19, "[[0] [10] [20]]"},
		{"all in one", adjacent(3, 10, 10), 30, "[[0 10 20]]"},
		{"a shared stream costs once", shared, 20, "[[0 0 10]]"},
		{"a shared stream is never split", shared, 1, "[[0 0] [10]]"},
		{"not adjacent", gap, 100, "[[0 10] [21]]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(nil, Options{MaxRequestSize: tc.maxRequest})
			if got := fmt.Sprint(offsets(r.groups(claimsOf(tc.cs)))); got != tc.want {
				t.Errorf("groups = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestSequentialSlack(t *testing.T) {
	k := keyOf(Chunk{Digest: dg(1)})
	const end = 1 << 20
	for _, tc := range []struct {
		off  int64
		want bool
	}{
		{end, true},
		{end - sequentialSlack, true},
		{end - sequentialSlack - 1, false},
		{end + sequentialSlack, true},
		{end + sequentialSlack + 1, false},
	} {
		r := NewReader(nil, Options{})
		if r.sequential(k, 0, end) {
			t.Fatal("a file's first read counts as sequential")
		}
		if got := r.sequential(k, tc.off, tc.off+10); got != tc.want {
			t.Errorf("read at %d after one ending at %d: sequential %v, want %v", tc.off, end, got, tc.want)
		}
	}
}

func TestSequentialTracksBoundedFiles(t *testing.T) {
	r := NewReader(nil, Options{})
	for i := range maxTrackedFiles + 10 {
		r.sequential(keyOf(Chunk{Digest: dg(i)}), 0, 10)
		if n := len(r.prefetch.lastEnd); n > maxTrackedFiles {
			t.Fatalf("%d files tracked, bound is %d", n, maxTrackedFiles)
		}
	}
	// A file tracked already is updated, not one more.
	r = NewReader(nil, Options{})
	for i := range maxTrackedFiles {
		r.sequential(keyOf(Chunk{Digest: dg(i)}), 0, 10)
	}
	if !r.sequential(keyOf(Chunk{Digest: dg(0)}), 10, 20) || len(r.prefetch.lastEnd) != maxTrackedFiles {
		t.Errorf("re-reading a tracked file: %d tracked", len(r.prefetch.lastEnd))
	}
}

func TestClaimPrefetchBounds(t *testing.T) {
	file := adjacent(10, 100, 50)
	for _, tc := range []struct {
		name   string
		memory int64 // MemoryCacheSize: the budget is half of it
		from   int   // the chunk the read ends in
		n      int
		want   int
	}{
		{"n chunks", 1 << 20, 0, 2, 2},
		{"at most maxPrefetchChunks", 1 << 20, 0, 9, maxPrefetchChunks},
		{"up to the file's end", 1 << 20, 7, 4, 2},
		{"budget of exactly three chunks", 600, 0, 4, 3},
		{"budget one byte short of three", 599, 0, 4, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(nil, Options{MemoryCacheSize: tc.memory})
			got := r.claimPrefetch(file, tc.from, tc.n)
			if len(got) != tc.want {
				t.Fatalf("claimed %d chunks, want %d", len(got), tc.want)
			}
			for i, cl := range got {
				if cl.c != file[tc.from+1+i] || !cl.speculative {
					t.Errorf("claim %d is %+v, want chunk %d, speculative", i, cl.c, tc.from+1+i)
				}
			}
			if r.prefetch.chunks != tc.want || r.prefetch.bytes != int64(tc.want)*100 {
				t.Errorf("prefetch state %d chunks, %d bytes", r.prefetch.chunks, r.prefetch.bytes)
			}
		})
	}

	// Chunks sharing the blob's first stream are prefetched like any.
	shared := adjacent(3, 100, 50)
	for i := range shared {
		shared[i].BlobOffset, shared[i].InnerOffset = 0, int64(i)*100
	}
	if got := NewReader(nil, Options{}).claimPrefetch(shared, 0, 2); len(got) != 2 {
		t.Errorf("claimed %d chunks of a shared stream at blob offset 0, want 2", len(got))
	}

	// A chunk list that stops making sense stops the prefetch there.
	bad := adjacent(4, 100, 50)
	bad[2].Offset++
	r := NewReader(nil, Options{})
	if got := r.claimPrefetch(bad, 0, 3); len(got) != 1 {
		t.Errorf("claimed %d chunks of a list broken at the second, want 1", len(got))
	}
	for _, broken := range []func(c *Chunk){
		func(c *Chunk) { c.Size = 0 },
		func(c *Chunk) { c.BlobSize = 0 },
		func(c *Chunk) { c.BlobOffset = -1 },
		func(c *Chunk) { c.InnerOffset = -1 },
	} {
		bad := adjacent(3, 100, 50)
		broken(&bad[1])
		bad[1].Size = max(bad[1].Size, 0)
		r := NewReader(nil, Options{})
		if got := r.claimPrefetch(bad, 0, 2); len(got) != 0 {
			t.Errorf("claimed %d chunks past a broken one (%+v)", len(got), bad[1])
		}
	}
}

// claimed claims cs for a read, as load does before it fetches.
func claimed(r *Reader, cs []Chunk) []claim {
	mine, _ := r.claimMissing(cs, make([][]byte, len(cs)))
	return mine
}

func TestReadAheadWindow(t *testing.T) {
	layout := adjacent(10, 40, 10) // chunk i at blob offset 10*i
	for _, tc := range []struct {
		name      string
		readAhead int64
		memory    int64
		at        int // the chunk the read asks for
		want      []int64
	}{
		{"forward to exactly the window", 30, 1 << 20, 0, []int64{0, 10, 20}},
		{"backward too", 30, 1 << 20, 5, []int64{50, 60, 70}},
		{"backward at the end", 30, 1 << 20, 9, []int64{70, 80, 90}},
		{"a window of one chunk", 10, 1 << 20, 3, []int64{30}},
		{"memory for exactly two more", 50, 4 * 80, 0, []int64{0, 10, 20}},
		{"memory one byte short of two more", 50, 4*80 - 4, 0, []int64{0, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(nil, Options{Layout: NewLayout(layout), ReadAhead: tc.readAhead, MaxRequestSize: 1 << 20, MemoryCacheSize: tc.memory})
			g := r.readAhead(context.Background(), claimed(r, layout[tc.at:tc.at+1]))
			var got []int64
			for _, cl := range g {
				got = append(got, cl.c.BlobOffset)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("read-ahead of chunk %d = %v, want %v", tc.at, got, tc.want)
			}
		})
	}

	// A request as large as the window is not extended.
	r := NewReader(nil, Options{Layout: NewLayout(layout), ReadAhead: 20, MaxRequestSize: 1 << 20})
	if g := r.readAhead(context.Background(), claimed(r, layout[0:2])); len(g) != 2 {
		t.Errorf("a request of the window's size grew to %d chunks", len(g))
	}
	// Chunks held in memory or in flight are skipped, and stop the window
	// when they start a stream.
	r = NewReader(nil, Options{Layout: NewLayout(layout), ReadAhead: 40, MaxRequestSize: 1 << 20})
	r.cache.add(layout[1].Digest, make([]byte, 40))
	if g := r.readAhead(context.Background(), claimed(r, layout[0:1])); len(g) != 1 {
		t.Errorf("read-ahead went past a cached chunk: %d chunks", len(g))
	}
}

// TestReadAheadGrowsOnlySequentially pins the window's growth at its
// edges: a first miss gets ReadAheadStart; a miss where the last window
// ended, or up to one window past it, doubles it up to ReadAhead; a miss
// one byte further, or before the last window's end, starts again.
func TestReadAheadGrowsOnlySequentially(t *testing.T) {
	layout := adjacent(64, 4, 1) // chunk i is the 1-byte stream at blob offset i
	newReader := func() *Reader {
		return NewReader(nil, Options{Layout: NewLayout(layout), ReadAhead: 8, ReadAheadStart: 2, MaxRequestSize: 1 << 20, MemoryCacheSize: 1 << 20})
	}
	// miss reads chunk at and returns the window's blob range.
	miss := func(r *Reader, at int) [2]int64 {
		g := r.readAhead(context.Background(), claimed(r, layout[at:at+1]))
		return [2]int64{g[0].c.BlobOffset, streamsEnd(g)}
	}
	for _, tc := range []struct {
		name   string
		misses []int      // chunks missed in turn
		want   [][2]int64 // their windows
	}{
		{"doubles while sequential, up to ReadAhead", []int{0, 2, 6, 14, 22}, [][2]int64{{0, 2}, {2, 6}, {6, 14}, {14, 22}, {22, 30}}},
		{"a first miss is never sequential", []int{1}, [][2]int64{{1, 3}}},
		{"exactly a window past the last end", []int{0, 4}, [][2]int64{{0, 2}, {4, 8}}},
		{"one byte more than a window past", []int{0, 5}, [][2]int64{{0, 2}, {5, 7}}},
		{"before the last window's end", []int{10, 5}, [][2]int64{{10, 12}, {5, 7}}},
		{"a jump resets a grown window", []int{0, 2, 40}, [][2]int64{{0, 2}, {2, 6}, {40, 42}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReader()
			for i, at := range tc.misses {
				if got := miss(r, at); got != tc.want[i] {
					t.Fatalf("miss %d (chunk %d): window %v, want %v", i, at, got, tc.want[i])
				}
			}
		})
	}
}

// TestReadAheadBackToTheFirstStream: a window grows backward down to the
// blob's first stream, included (a miss on the second stream of a layer
// reads the first along with it).
func TestReadAheadBackToTheFirstStream(t *testing.T) {
	layout := adjacent(2, 4, 1) // two 1-byte streams, at blob offsets 0 and 1
	r := NewReader(nil, Options{Layout: NewLayout(layout), ReadAhead: 8, ReadAheadStart: 2, MaxRequestSize: 1 << 20, MemoryCacheSize: 1 << 20})
	g := r.readAhead(context.Background(), claimed(r, layout[1:2]))
	if got := [2]int64{g[0].c.BlobOffset, streamsEnd(g)}; got != [2]int64{0, 2} {
		t.Errorf("miss on the second stream: window %v, want [0 2]", got)
	}
}

func TestOptionsDefaults(t *testing.T) {
	l := NewLayout(adjacent(2, 10, 10))
	for _, tc := range []struct {
		name string
		in   Options
		want func(o Options) bool
	}{
		{"zero", Options{Layout: l}, func(o Options) bool {
			return o.MemoryCacheSize == DefaultMemoryCacheSize && o.MaxRequestSize == DefaultMaxRequestSize &&
				o.Parallel == DefaultParallel && o.ReadAhead == DefaultReadAhead &&
				o.SequentialPrefetch == DefaultSequentialPrefetch && o.Context != nil
		}},
		{"negative", Options{Layout: l, MemoryCacheSize: -1, MaxRequestSize: -1, Parallel: -1, ReadAhead: -1, SequentialPrefetch: -1}, func(o Options) bool {
			return o.MemoryCacheSize == 0 && o.MaxRequestSize == DefaultMaxRequestSize && o.Parallel == DefaultParallel &&
				o.ReadAhead == 0 && o.SequentialPrefetch == 0
		}},
		{"one", Options{Layout: l, MemoryCacheSize: 1, MaxRequestSize: 1, Parallel: 1, ReadAhead: 1, SequentialPrefetch: 1}, func(o Options) bool {
			return o.MemoryCacheSize == 1 && o.MaxRequestSize == 1 && o.Parallel == 1 && o.ReadAhead == 1 && o.SequentialPrefetch == 1
		}},
		{"read-ahead capped at the request size", Options{Layout: l, MaxRequestSize: 100, ReadAhead: 101}, func(o Options) bool { return o.ReadAhead == 100 }},
		{"no read-ahead without a layout", Options{ReadAhead: 100}, func(o Options) bool { return o.ReadAhead == 0 }},
		{"no memory, no speculation", Options{Layout: l, MemoryCacheSize: -1, ReadAhead: 100, SequentialPrefetch: 3}, func(o Options) bool {
			return o.ReadAhead == 0 && o.SequentialPrefetch == 0
		}},
	} {
		if got := tc.in.withDefaults(); !tc.want(got) {
			t.Errorf("%s: withDefaults = %+v", tc.name, got)
		}
	}
}

func TestLRUEdges(t *testing.T) {
	c := newLRU(8)
	c.add(dg(1), make([]byte, 8)) // exactly the bound: kept
	if !c.holds(dg(1), 8) || c.holds(dg(1), 7) {
		t.Fatal("a chunk of exactly the bound is not held at its size")
	}
	c.add(dg(2), make([]byte, 1)) // evicts the first
	if c.holds(dg(1), 8) || !c.holds(dg(2), 1) || c.size != 1 {
		t.Errorf("after eviction: size %d", c.size)
	}
	c.add(dg(3), make([]byte, 7)) // 1 + 7 = 8: nothing evicted
	if !c.holds(dg(2), 1) || !c.holds(dg(3), 7) || c.size != 8 {
		t.Errorf("at the bound: size %d", c.size)
	}
	if c.holds(dg(4), 0) {
		t.Error("holds a chunk never added")
	}
}

func TestLayoutFirstAt(t *testing.T) {
	l := NewLayout(adjacent(3, 10, 10)) // at 0, 10, 20
	for off, want := range map[int64]int{-1: 0, 0: 0, 1: 1, 10: 1, 11: 2, 20: 2, 21: 3} {
		if got := l.firstAt(off); got != want {
			t.Errorf("firstAt(%d) = %d, want %d", off, got, want)
		}
	}
	kept := NewLayout([]Chunk{{Size: 1, BlobOffset: 0, BlobSize: 1, InnerOffset: 0, Digest: dg(1)}})
	if kept.Len() != 1 {
		t.Error("a chunk of 1 byte at offset 0 was left out")
	}
}

// TestLayoutGivesBackDuplicatesRoom pins when NewLayout copies its entries
// to drop the room duplicates took: beyond an eighth of what it keeps. A
// copy has less capacity than the distinct and duplicate chunks together.
func TestLayoutGivesBackDuplicatesRoom(t *testing.T) {
	for _, tc := range []struct {
		distinct, dups int
		copied         bool
	}{
		{64, 8, false}, // 8 of room is 64/8: kept
		{64, 9, true},
		{64, 0, false},
	} {
		cs := adjacent(tc.distinct, 10, 10)
		cs = append(cs, cs[:tc.dups]...)
		l := NewLayout(cs)
		if l.Len() != tc.distinct {
			t.Fatalf("%d entries, want %d", l.Len(), tc.distinct)
		}
		if copied := cap(l.entries) < len(cs); copied != tc.copied {
			t.Errorf("%d distinct, %d duplicates: capacity %d, want copied %v", tc.distinct, tc.dups, cap(l.entries), tc.copied)
		}
	}
}

// TestLayoutSharesOrderedChunks pins when NewLayout keeps the caller's
// slice rather than a copy (a validated layer's chunks, in blob order):
// only when every chunk is usable and strictly ordered by blob and inner
// offset. Anything else is copied, sorted and filtered, and the caller's
// slice is left as it was.
func TestLayoutSharesOrderedChunks(t *testing.T) {
	shares := func(l *Layout, cs []Chunk) bool { return len(l.entries) > 0 && &l.entries[0] == &cs[0] }
	inOrder := adjacent(4, 10, 10)
	if l := NewLayout(inOrder); !shares(l, inOrder) || l.Len() != 4 {
		t.Errorf("chunks in blob order were copied (%d entries)", l.Len())
	}
	// Two chunks of one stream, told apart by their inner offsets.
	sameStream := []Chunk{
		{Size: 10, BlobOffset: 5, BlobSize: 8, InnerOffset: 0, Digest: dg(1)},
		{Size: 10, BlobOffset: 5, BlobSize: 8, InnerOffset: 10, Digest: dg(2)},
	}
	if l := NewLayout(sameStream); !shares(l, sameStream) {
		t.Error("chunks of one stream in inner-offset order were copied")
	}
	for name, mutate := range map[string]func(cs []Chunk){
		"out of blob order":       func(cs []Chunk) { cs[1], cs[2] = cs[2], cs[1] },
		"same place twice":        func(cs []Chunk) { cs[2] = cs[1] },
		"inner offsets backwards": func(cs []Chunk) { cs[2].BlobOffset, cs[2].InnerOffset, cs[1].InnerOffset = cs[1].BlobOffset, 0, 5 },
		"no digest":               func(cs []Chunk) { cs[3].Digest = "" },
		"no size":                 func(cs []Chunk) { cs[3].Size = 0 },
		"no blob size":            func(cs []Chunk) { cs[3].BlobSize = 0 },
		"negative blob offset":    func(cs []Chunk) { cs[0].BlobOffset = -1 },
		"negative inner offset":   func(cs []Chunk) { cs[3].InnerOffset = -1 },
	} {
		cs := adjacent(4, 10, 10)
		mutate(cs)
		before := slices.Clone(cs)
		l := NewLayout(cs)
		if shares(l, cs) {
			t.Errorf("%s: the caller's slice was kept", name)
		}
		if !slices.Equal(cs, before) {
			t.Errorf("%s: the caller's slice was modified", name)
		}
		for i := 1; i < l.Len(); i++ {
			if p, c := l.entries[i-1], l.entries[i]; c.BlobOffset < p.BlobOffset || c.BlobOffset == p.BlobOffset && c.InnerOffset <= p.InnerOffset {
				t.Errorf("%s: layout out of order at %d", name, i)
			}
		}
	}
}
