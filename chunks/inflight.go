package chunks

import (
	"context"

	"github.com/opencontainers/go-digest"
)

// fetchKey identifies a chunk's compressed stream in the blob.
type fetchKey struct {
	dgst       digest.Digest
	blobOffset int64
}

func keyOf(c Chunk) fetchKey { return fetchKey{c.Digest, c.BlobOffset} }

// pending is one fetch of one chunk that other readers may wait for.
// The other fields are set before done is closed.
type pending struct {
	done chan struct{}
	data []byte
	err  error
	// refetch says err is no verdict on the chunk, and a reader still
	// waiting should fetch it itself: the fetching read's own context
	// ended, or the chunk was only read ahead, which gets no retry.
	refetch bool
	// lift raises the fetch that claimed the chunk, if it was not a
	// foreground read's, to the foreground class (nil for those).
	lift *Lift
}

// claim is a chunk a read fetches: index into the read's chunks, and the
// fetch that will deliver it. A speculative claim is one read-ahead added:
// no read asked for it, so its failure fails no read.
type claim struct {
	idx         int
	c           Chunk
	p           *pending
	speculative bool
}

// claimMissing takes every chunk of need that out does not hold yet from
// the cache, or else joins the fetch another read has in flight for it
// (wait), or else registers a fetch of its own (mine). Doing all three
// under one lock is what lets a read merge exactly the chunks nobody else
// is fetching into its range requests; x/sync/singleflight cannot say
// whether a caller leads a key before the call completes, so it cannot
// serve here.
func (r *Reader) claimMissing(need []Chunk, out [][]byte) (mine, wait []claim) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, c := range need {
		if out[i] != nil {
			continue
		}
		// Keyed by digest alone: equal digests are equal bytes. The size
		// check guards against a chunk list that lies about its size.
		if d, ok := r.cache.get(c.Digest, c.Size); ok {
			out[i] = d
			continue
		}
		k := keyOf(c)
		if p, ok := r.inflight[k]; ok {
			wait = append(wait, claim{idx: i, c: c, p: p})
			continue
		}
		p := &pending{done: make(chan struct{})}
		r.inflight[k] = p
		mine = append(mine, claim{idx: i, c: c, p: p})
	}
	return mine, wait
}

// complete publishes the outcome of a claimed fetch: verified data goes to
// the cache before the fetch leaves the in-flight table, so that no reader
// ever finds a chunk in neither and fetches it again.
func (r *Reader) complete(ctx context.Context, cl claim, data []byte, err error) {
	if err == nil {
		r.cache.add(cl.c.Digest, data)
	}
	r.mu.Lock()
	delete(r.inflight, keyOf(cl.c))
	r.mu.Unlock()
	cl.p.data, cl.p.err = data, err
	cl.p.refetch = err != nil && (ctx.Err() != nil || cl.speculative)
	close(cl.p.done)
}

// load returns the verified data of every chunk of need, fetching what is
// neither cached nor in flight and waiting for what is in flight.
func (r *Reader) load(ctx context.Context, need []Chunk) ([][]byte, error) {
	out := make([][]byte, len(need))
	for marked := false; ; {
		mine, wait := r.claimMissing(need, out)
		if len(mine) == 0 && len(wait) == 0 {
			return out, nil
		}
		if !marked {
			// Background work stands aside while this read runs,
			// wherever its chunks come from (the disk, a prefetch).
			defer r.opts.Scheduler.ReadStarted(r.opts.Registry)()
			marked = true
		}
		// Every claim of ours is completed by fetch, even on error, so
		// readers waiting for them never hang.
		r.fetch(ctx, mine, Foreground, nil)
		for _, cl := range mine {
			if cl.p.err != nil {
				return nil, cl.p.err
			}
			out[cl.idx] = cl.p.data
		}
		for _, cl := range wait {
			// A container waits for this chunk: a prefetch still
			// queued for it must not wait behind other prefetches.
			cl.p.lift.Raise()
			select {
			case <-cl.p.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			switch {
			case cl.p.err == nil:
				out[cl.idx] = cl.p.data
			case cl.p.refetch && ctx.Err() == nil:
				// The read that fetched it was cancelled, not us, or
				// only read it ahead: claim it again on the next round.
			default:
				return nil, cl.p.err
			}
		}
	}
}
