package chunks

import (
	"cmp"
	"context"
	"slices"
)

// readAhead returns group g (claims of one read, adjacent in the blob) with
// the chunks read-ahead fetches along with it, claimed as speculative, in
// blob order. A request costs the registry's round trip whatever its size
// within reason, and files that are read together (a package's modules,
// /etc) were mostly written next to each other: reading a window of the
// blob at once turns one request per small file into one per window.
//
// The window starts as g's own streams, takes in the other chunks of those
// streams, then grows forward and, with what budget is left, backward, one
// whole stream at a time, while the next stream is contiguous with it, fits
// in the window's compressed bytes (readAheadWindow: small at first, grown
// by sequential misses up to ReadAhead), and its nearest chunk is neither cached
// nor in flight (a chunk someone holds or fetches is where another window
// ends). The decompressed size of the chunks added is bounded by a quarter
// of the memory cache, so one window cannot flush it. Claiming under the
// same lock as claimMissing makes concurrent readers wait for these chunks
// rather than fetch them again. Chunks of the window found in the disk
// cache are taken from there: one at an edge of the window shrinks the
// request, one inside it is only not decoded again (without this, a read
// after a restart would fetch from the registry every cached neighbour of
// the chunk it misses).
func (r *Reader) readAhead(ctx context.Context, g []claim) []claim {
	l := r.opts.Layout
	if r.opts.ReadAhead <= 0 || l == nil {
		return g
	}
	start, end := g[0].c.BlobOffset, streamsEnd(g)
	r.mu.Lock()
	limit := r.readAheadWindow(start)
	if end-start >= limit {
		r.raEnd = end
		r.mu.Unlock()
		return g
	}
	w := window{r: r, start: start, end: end, limit: limit, memory: r.opts.MemoryCacheSize / 4}
	first := l.firstAt(start)
	for i := first; i < len(l.entries); i++ {
		if !w.forward(i) {
			break
		}
	}
	for i := first - 1; i >= 0; i-- {
		if !w.backward(i) {
			break
		}
	}
	r.raEnd = w.end
	r.mu.Unlock()

	w.spec = r.fromDisk(ctx, w.spec)
	if len(w.spec) == 0 {
		return g
	}
	all := append(slices.Clip(g), w.spec...)
	slices.SortStableFunc(all, func(a, b claim) int {
		return cmp.Or(cmp.Compare(a.c.BlobOffset, b.c.BlobOffset), cmp.Compare(a.c.InnerOffset, b.c.InnerOffset))
	})
	return all
}

// readAheadWindow returns the window of a miss at blob offset start, under
// r.mu: doubled (up to ReadAhead) when the miss is sequential, starting at
// or at most a window after where the last window ended, and back to
// ReadAheadStart otherwise. A container's first command reads scattered
// files, each a small window; a reader walking the blob grows it, for far
// fewer requests.
func (r *Reader) readAheadWindow(start int64) int64 {
	if r.raEnd >= 0 && start >= r.raEnd && start-r.raEnd <= r.raWindow {
		r.raWindow = min(2*r.raWindow, r.opts.ReadAhead)
	} else {
		r.raWindow = r.opts.ReadAheadStart
	}
	return r.raWindow
}

// window is the blob range [start, end) one request will read while
// readAhead grows it. Its methods run under r.mu.
type window struct {
	r          *Reader
	start, end int64
	limit      int64 // the compressed bytes the window may span
	memory     int64 // decompressed bytes the speculative chunks may still take
	spec       []claim
}

// forward considers layout entry i, at or after the window's start, and
// reports whether the next one is worth considering.
func (w *window) forward(i int) bool {
	e := &w.r.opts.Layout.entries[i]
	switch {
	case e.BlobOffset+e.BlobSize <= w.end:
		// Its stream is read anyway: take it if nobody has it.
		return w.take(i, false)
	case e.BlobOffset == w.end && e.BlobOffset+e.BlobSize-w.start <= w.limit:
		if !w.take(i, true) {
			return false
		}
		w.end = e.BlobOffset + e.BlobSize
		return true
	default:
		// A gap, a stream that does not fit, or one that overlaps ours.
		return false
	}
}

// backward considers layout entry i, before the window's start, and
// reports whether the previous one is worth considering.
func (w *window) backward(i int) bool {
	e := &w.r.opts.Layout.entries[i]
	switch {
	case e.BlobOffset >= w.start && e.BlobOffset+e.BlobSize <= w.end:
		return w.take(i, false)
	case e.BlobOffset+e.BlobSize == w.start && w.end-e.BlobOffset <= w.limit:
		if !w.take(i, true) {
			return false
		}
		w.start = e.BlobOffset
		return true
	default:
		return false
	}
}

// take claims layout entry i as speculative unless it is cached or in
// flight. It reports whether the window may go on: a chunk someone has is
// skipped inside the window (its bytes are read anyway) but ends it at its
// edge (newStream), and a chunk over the memory budget ends it.
func (w *window) take(i int, newStream bool) bool {
	r := w.r
	c := r.opts.Layout.chunk(i)
	k := keyOf(c)
	if _, ok := r.inflight[k]; ok || r.cache.holds(c.Digest, c.Size) {
		return !newStream
	}
	if c.Size > w.memory {
		return false
	}
	w.memory -= c.Size
	p := &pending{done: make(chan struct{})}
	r.inflight[k] = p
	w.spec = append(w.spec, claim{idx: -1, c: c, p: p, speculative: true})
	return true
}

// streamsEnd returns where the last compressed stream of claims ends.
func streamsEnd(claims []claim) int64 {
	var end int64
	for _, cl := range claims {
		end = max(end, cl.c.BlobOffset+cl.c.BlobSize)
	}
	return end
}
