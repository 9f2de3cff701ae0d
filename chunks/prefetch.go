package chunks

import (
	"context"
	"errors"
	"sort"

	"github.com/containerd/log"
)

const (
	// maxPrefetchChunks bounds the chunks one Reader prefetches at once,
	// so that a few files read sequentially cannot take every connection
	// to the registry from the reads that wait.
	maxPrefetchChunks = 4
	// sequentialSlack is how far from where the previous read of a file
	// ended the next may start and still count as sequential: the kernel
	// sends the READs of its readahead concurrently, so they may arrive
	// out of order by about one read (128 KiB by default).
	sequentialSlack = 128 << 10
	// maxTrackedFiles bounds the files whose last read the Reader
	// remembers; forgetting one costs at most one missed prefetch.
	maxTrackedFiles = 1024
)

// prefetchState is what sequential prefetch keeps between reads. It is
// guarded by Reader.mu.
type prefetchState struct {
	// lastEnd is where the last read of each file (keyed by its first
	// chunk) ended.
	lastEnd map[fetchKey]int64
	// chunks and bytes (decompressed) are what prefetch has in flight.
	chunks int
	bytes  int64
}

// prefetchSequential starts fetching, in the background, the chunks of
// file after the one holding byte end-1, up to SequentialPrefetch of
// them, if the read of [off, end) continues the previous read of file.
// It runs on every such read, not only on one that misses: a file read
// sequentially then always has the next chunks in flight, where starting
// only on a miss would stall once every SequentialPrefetch chunks.
//
// The chunks are claimed in the in-flight table like any fetch, so a read
// that needs one waits for it instead of fetching it again, and claimed
// as speculative: one that fails is dropped, and a read waiting for it
// fetches it itself, with a retry of its own.
func (r *Reader) prefetchSequential(ctx context.Context, file []Chunk, off, end int64) {
	n := r.opts.SequentialPrefetch
	if n <= 0 {
		return
	}
	// The chunk holding the last byte read.
	k := sort.Search(len(file), func(i int) bool { return file[i].Offset+file[i].Size >= end })

	r.mu.Lock()
	var mine []claim
	if r.sequential(keyOf(file[0]), off, end) {
		mine = r.claimPrefetch(file, k, n)
	}
	r.mu.Unlock()
	if len(mine) == 0 {
		return
	}

	// The read's logger names the layer and the mount; its cancellation
	// is the read's own, which must not stop a fetch others may wait for.
	bctx := log.WithLogger(r.opts.Context, log.G(ctx))
	r.background.Add(1)
	go func() {
		defer r.background.Done()
		r.fetch(bctx, mine, Prefetch, mine[0].p.lift)
		r.prefetchDone(bctx, mine)
	}()
}

// sequential records that a read of the file keyed by key covered
// [off, end) and reports whether it continued the previous one. It runs
// under r.mu.
func (r *Reader) sequential(key fetchKey, off, end int64) bool {
	st := &r.prefetch
	prev, ok := st.lastEnd[key]
	if !ok && len(st.lastEnd) >= maxTrackedFiles {
		for k := range st.lastEnd {
			delete(st.lastEnd, k) // any one: maps iterate in random order
			break
		}
	}
	st.lastEnd[key] = end
	return ok && off >= prev-sequentialSlack && off <= prev+sequentialSlack
}

// claimPrefetch claims, as speculative, the chunks k+1..k+n of file that
// are neither cached nor in flight, within the Reader's prefetch bounds.
// It stops at a chunk that does not continue the file's chunk list: a
// list ReadAt would refuse is never fetched ahead. It runs under r.mu.
func (r *Reader) claimPrefetch(file []Chunk, k, n int) []claim {
	st := &r.prefetch
	budget := r.prefetchBudget()
	var mine []claim
	lift := NewLift() // one for the claims of this call, fetched together
	for j := k + 1; j <= k+n && j < len(file); j++ {
		c, prev := file[j], file[j-1]
		if c.Offset != prev.Offset+prev.Size || c.Size <= 0 || c.BlobSize <= 0 || c.BlobOffset < 0 || c.InnerOffset < 0 {
			break
		}
		key := keyOf(c)
		if _, ok := r.inflight[key]; ok || r.cache.holds(c.Digest, c.Size) {
			continue
		}
		if st.chunks >= maxPrefetchChunks || st.bytes+c.Size > budget {
			break
		}
		st.chunks++
		st.bytes += c.Size
		p := &pending{done: make(chan struct{}), lift: lift}
		r.inflight[key] = p
		mine = append(mine, claim{idx: -1, c: c, p: p, speculative: true})
	}
	return mine
}

// prefetchDone releases the bounds the claims mine held and counts and
// logs those that failed. Verification failures were logged by the fetch,
// and a failure because the Reader's context ended is no failure.
func (r *Reader) prefetchDone(ctx context.Context, mine []claim) {
	var bytes int64
	var failed []claim
	for _, cl := range mine {
		bytes += cl.c.Size
		if cl.p.err != nil {
			failed = append(failed, cl)
		}
	}
	r.mu.Lock()
	r.prefetch.chunks -= len(mine)
	r.prefetch.bytes -= bytes
	r.mu.Unlock()
	if len(failed) == 0 || ctx.Err() != nil {
		return
	}
	r.prefetchDropped.Add(int64(len(failed)))
	// Verification failures were logged by the fetch, an unreachable
	// source by r.outage.
	if err := failed[0].p.err; !errors.Is(err, ErrVerification) && !errors.Is(err, ErrUnavailable) {
		log.G(ctx).WithError(err).WithFields(r.chunkFields(failed[0].c)).WithField("chunks", len(failed)).
			Warn("chunk prefetch failed, dropped")
	}
}

// waitBackground waits until every background fetch has ended, which
// they do soon after Options.Context ends.
func (r *Reader) waitBackground() { r.background.Wait() }

// prefetchBudget bounds the decompressed bytes of the chunks a Reader
// prefetches at once: half of the memory tier, so that the default tier
// (16 MiB) still keeps two 4 MiB chunks of a file read sequentially in
// flight while the read is served (with one, the cold read of a 64 MiB file
// waited for every fetch).
func (r *Reader) prefetchBudget() int64 { return r.opts.MemoryCacheSize / 2 }
