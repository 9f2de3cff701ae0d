package chunks

import (
	"context"
)

// Before returns the chunks of the layout whose compressed streams start
// before blobOffset, in blob order: the prioritized files of an eStargz
// layer when blobOffset is its prefetch landmark's. File offsets are zero:
// the chunks are for Prefetch, which keeps them by digest.
func (l *Layout) Before(blobOffset int64) []Chunk {
	var out []Chunk
	for i := range l.entries {
		if l.entries[i].BlobOffset >= blobOffset {
			break
		}
		out = append(out, l.chunk(i))
	}
	return out
}

// prefetchBatch bounds the compressed bytes one Prefetch round claims:
// every chunk of a round is held in memory at once until its fetch ends,
// and a read of a chunk not yet claimed goes ahead of the whole round.
const prefetchBatchRequests = 4

// Prefetch fetches, at the Prefetch class, the chunks of cs (in blob order)
// that are in neither the memory tier nor flight, merged into range
// requests of up to MaxRequestSize and up to Parallel at once, in rounds
// of a few requests' bytes. The chunks are claimed like a read's, so a read
// that needs one waits for it (and lifts its request to the foreground
// class) instead of fetching it again; a chunk the disk cache holds costs
// the registry nothing. progress, if set, is called after each round with
// the decompressed bytes of cs covered so far. It returns when every
// chunk was tried or ctx ended (ctx.Err()); a chunk that fails is dropped
// and fails no read.
func (r *Reader) Prefetch(ctx context.Context, cs []Chunk, progress func(done int64)) error {
	return r.Fill(ctx, cs, Prefetch, progress)
}

// Fill is Prefetch at any class: Background fills the cache with a whole
// layer (Layout's chunks) at the scheduler's lowest priority, paced by its
// background rate, each request lifted to Foreground when a read waits
// for one of its chunks.
func (r *Reader) Fill(ctx context.Context, cs []Chunk, class Priority, progress func(done int64)) error {
	var done int64
	for len(cs) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		budget := r.opts.MaxRequestSize * prefetchBatchRequests
		lift := NewLift()
		var mine []claim
		var round int64
		r.mu.Lock()
		for len(cs) > 0 && (round == 0 || round+cs[0].BlobSize <= budget) {
			c := cs[0]
			cs = cs[1:]
			round += c.BlobSize
			done += c.Size
			k := keyOf(c)
			if _, ok := r.inflight[k]; ok || r.cache.holds(c.Digest, c.Size) {
				continue
			}
			p := &pending{done: make(chan struct{}), lift: lift}
			r.inflight[k] = p
			mine = append(mine, claim{idx: -1, c: c, p: p, speculative: true})
		}
		r.mu.Unlock()
		r.fetch(ctx, mine, class, lift) // nothing when every chunk was held
		if progress != nil {
			progress(done)
		}
	}
	return ctx.Err()
}
