package chunks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/containerd/log"
	"github.com/lazyfs/lazyfs/internal/mmapbuf"
	"github.com/lazyfs/lazyfs/metrics"
	"golang.org/x/sync/errgroup"
)

// fetch completes every claim of mine from the disk cache, or else fetches
// and verifies it from the source, and keeps it on disk: chunks
// adjacent in the blob share one range request up to MaxRequestSize, which
// read-ahead may widen, and up to Parallel requests run at once.
func (r *Reader) fetch(ctx context.Context, mine []claim, class Priority, lift *Lift) {
	mine = r.fromDisk(ctx, mine)
	var eg errgroup.Group
	eg.SetLimit(r.opts.Parallel)
	for _, g := range r.groups(mine) {
		eg.Go(func() error {
			// Extended only now, when the request is about to go out,
			// so that it skips what other reads fetched meanwhile.
			r.fetchOnce(ctx, r.readAhead(ctx, g), class, lift)
			return nil // outcomes travel in the claims
		})
	}
	_ = eg.Wait()
}

// groups splits claims (in blob order, as a file's chunks are) into runs
// of adjacent chunks of at most MaxRequestSize compressed bytes each.
// Chunks that share a compressed stream are adjacent and cost its bytes
// once.
func (r *Reader) groups(claims []claim) [][]claim {
	var out [][]claim
	var cur []claim
	var curBytes int64
	for _, cl := range claims {
		add := cl.c.BlobSize
		if n := len(cur); n > 0 {
			prev := cur[n-1].c
			sameStream := prev.BlobOffset == cl.c.BlobOffset
			if sameStream {
				add = 0
			}
			adjacent := sameStream || prev.BlobOffset+prev.BlobSize == cl.c.BlobOffset
			if !adjacent || (!sameStream && curBytes+add > r.opts.MaxRequestSize) {
				out = append(out, cur)
				cur, curBytes, add = nil, 0, cl.c.BlobSize
			}
		}
		cur = append(cur, cl)
		curBytes += add
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// fetchOnce fetches one group and completes each of its claims. There is
// one attempt per range at this layer: the source (package remote) owns
// retries, backoff and hedging, so that they are never stacked. A chunk
// that fails is final for the reads that asked for it; a speculative one is
// dropped (its failure is no read's, and a reader waiting for it fetches it
// itself).
func (r *Reader) fetchOnce(ctx context.Context, g []claim, class Priority, lift *Lift) {
	datas, errs := r.fetchGroup(ctx, g, class, lift)
	var badSpec, failed []claim
	var badSpecErr, failedErr error
	for i, cl := range g {
		err := errs[i]
		switch {
		case err == nil:
			r.fetched(ctx, cl, datas[i])
			continue
		case cl.speculative && errors.Is(err, ErrVerification):
			if badSpec == nil {
				badSpecErr = err
			}
			badSpec = append(badSpec, cl)
		case !cl.speculative && ctx.Err() == nil && !errors.Is(err, ErrUnavailable):
			// Unavailable sources are logged once per outage by
			// r.outage, not once per chunk.
			if failed == nil {
				failedErr = err
			}
			failed = append(failed, cl)
		}
		r.complete(ctx, cl, nil, r.chunkError(cl.c, err))
	}
	if len(badSpec) > 0 {
		// A request that failed as a whole is logged below; bad bytes
		// in a chunk nobody asked for yet still say something is wrong.
		fields := r.chunkFields(badSpec[0].c)
		delete(fields, "file_offset") // unknown for a chunk read ahead
		log.G(ctx).WithError(badSpecErr).WithFields(fields).WithField("chunks", len(badSpec)).
			Warn("chunk read ahead failed verification, dropped")
	}
	if len(failed) > 0 {
		log.G(ctx).WithError(failedErr).WithFields(r.chunkFields(failed[0].c)).WithField("chunks", len(failed)).
			Error("chunk fetch failed")
	}
}

// fetchGroup reads the compressed bytes of the adjacent chunks of g (in
// blob order) with one request and decodes each, every compressed stream
// once. It returns each chunk's verified data or error.
func (r *Reader) fetchGroup(ctx context.Context, g []claim, class Priority, lift *Lift) ([][]byte, []error) {
	datas, errs := make([][]byte, len(g)), make([]error, len(g))
	start := g[0].c.BlobOffset
	end := streamsEnd(g)
	release, err := r.opts.Scheduler.Acquire(ctx, r.opts.Registry, class, end-start, lift)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return datas, errs
	}
	buf := rangeBuffer(end - start)
	defer putRangeBuffer(buf)
	var n int
	var decoded *decodedGroup // an answer verify decoded: a good one if any
	if vs, ok := r.src.(VerifyingSource); ok {
		// Each answer is decoded and verified as it arrives; one with a
		// chunk that fails its digest is retried by the source. Hedged
		// attempts may call verify at once.
		var mu sync.Mutex
		n, err = vs.ReadAtVerified(ctx, buf, start, func(b []byte) error {
			d := r.decodeGroup(g, start, b)
			mu.Lock()
			defer mu.Unlock()
			if decoded == nil || decoded.firstErr() != nil {
				decoded = d
			}
			return d.firstErr()
		})
		mu.Lock()
		defer mu.Unlock()
		if err != nil && decoded != nil && errors.Is(err, ErrVerification) {
			// The source gave up on corrupt answers: the chunks of the
			// last one that verified are served, the others are EIO
			// (a verification failure, not an outage).
			release()
			r.outage.ended(ctx, r.opts.LayerDigest)
			return decoded.datas, decoded.errs
		}
	} else {
		n, err = r.src.ReadAt(ctx, buf, start)
	}
	release()
	if n < len(buf) {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("%w: source returned %d of %d bytes at blob offset %d", io.ErrUnexpectedEOF, n, len(buf), start)
		}
		if ctx.Err() == nil {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
			r.outage.failed(ctx, r.opts.LayerDigest, err)
		}
		for i := range errs {
			errs[i] = err
		}
		return datas, errs
	}
	r.outage.ended(ctx, r.opts.LayerDigest)
	// A full read may come with io.EOF at the end of the blob.
	metrics.ChunkFetches.Add(float64(len(g)))
	metrics.ChunkFetchBytes.Add(float64(len(buf)))
	if decoded == nil {
		decoded = r.decodeGroup(g, start, buf)
	}
	metrics.ReadAheadBytes.Add(float64(max(0, int64(len(buf))-decoded.asked)))
	return decoded.datas, decoded.errs
}

// decodedGroup is a group's answer decoded: each chunk's verified data or
// error, and how many of its bytes some read asked for.
type decodedGroup struct {
	datas [][]byte
	errs  []error
	asked int64 // bytes of the streams holding a chunk a read asked for
}

func (d *decodedGroup) firstErr() error {
	for _, err := range d.errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// decodeGroup decodes the compressed bytes buf (from blob offset start) of
// the adjacent chunks of g, every compressed stream once, and verifies
// each chunk against its digest. Every failure is counted.
func (r *Reader) decodeGroup(g []claim, start int64, buf []byte) *decodedGroup {
	d := &decodedGroup{datas: make([][]byte, len(g)), errs: make([]error, len(g))}
	cs := make([]Chunk, 0, len(g))
	for i := 0; i < len(g); {
		// g[i:j] share one stream.
		off := g[i].c.BlobOffset
		j, end, speculative := i, off, true
		cs = cs[:0]
		for ; j < len(g) && g[j].c.BlobOffset == off; j++ {
			cs = append(cs, g[j].c)
			end = max(end, off+g[j].c.BlobSize)
			speculative = speculative && g[j].speculative
		}
		if !speculative {
			d.asked += end - off
		}
		r.decodeStream(cs, buf[off-start:end-start], d.datas[i:j], d.errs[i:j])
		for _, err := range d.errs[i:j] {
			if err != nil {
				metrics.VerificationFailures.Inc()
			}
		}
		i = j
	}
	return d
}

// chunkError names the layer and the chunk's place in blob and file.
func (r *Reader) chunkError(c Chunk, err error) error {
	return fmt.Errorf("layer %s: chunk at blob offset %d (file offset %d, %d bytes): %w",
		r.opts.LayerDigest, c.BlobOffset, c.Offset, c.Size, err)
}

func (r *Reader) chunkFields(c Chunk) log.Fields {
	return log.Fields{
		"layer_digest": r.opts.LayerDigest,
		"chunk_digest": c.Digest,
		"blob_offset":  c.BlobOffset,
		"file_offset":  c.Offset,
	}
}

// rangeBufs holds the buffers of range requests up to
// DefaultMaxRequestSize, reused from one request to the next (package
// mmapbuf says why). A buffer goes back only once the source is done with
// it (remote's hedged attempts have all ended when ReadAt returns) and
// decoding copied the chunks out of it. Two kept are enough for a file read
// sequentially (a request and the one fetched ahead) and bound what stays
// resident to 8 MiB.
var rangeBufs = mmapbuf.New(DefaultMaxRequestSize, 2)

// rangeBuffer returns a buffer of n bytes, from rangeBufs if it fits.
func rangeBuffer(n int64) []byte {
	if n > DefaultMaxRequestSize {
		return make([]byte, n)
	}
	return rangeBufs.Get()[:n]
}

// putRangeBuffer hands a buffer of rangeBuffer back for reuse (rangeBufs
// keeps only its own size: a larger one is left to the garbage collector).
func putRangeBuffer(b []byte) { rangeBufs.Put(b) }
