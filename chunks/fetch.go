package chunks

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/containerd/log"
	"github.com/lazyfs/lazyfs/metrics"
	"golang.org/x/sync/errgroup"
)

// fetch completes every claim of mine from the disk cache, or else fetches
// and verifies it from the source, and keeps it on disk: chunks
// adjacent in the blob share one range request up to MaxRequestSize, which
// read-ahead may widen, and up to Parallel requests run at once. A chunk
// that fails is fetched once more before its error is final.
func (r *Reader) fetch(ctx context.Context, mine []claim) {
	mine = r.fromDisk(ctx, mine)
	var eg errgroup.Group
	eg.SetLimit(r.opts.Parallel)
	for _, g := range r.groups(mine) {
		eg.Go(func() error {
			// Extended only now, when the request is about to go out,
			// so that it skips what other reads fetched meanwhile.
			r.fetchWithRetry(ctx, r.readAhead(ctx, g))
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

// fetchWithRetry fetches one group and completes each of its claims,
// retrying the chunks a read asked for that failed once (regrouped, since
// the failures need not be adjacent, and without read-ahead). A
// speculative chunk that failed is dropped: its failure is no read's, and
// a reader waiting for it fetches it itself, with a retry of its own.
func (r *Reader) fetchWithRetry(ctx context.Context, g []claim) {
	datas, errs := r.fetchGroup(ctx, g)
	var again, badSpec []claim
	var againErr, badSpecErr error
	for i, cl := range g {
		switch {
		case errs[i] == nil:
			r.fetched(ctx, cl, datas[i])
		case cl.speculative:
			if errors.Is(errs[i], ErrVerification) {
				if badSpec == nil {
					badSpecErr = errs[i]
				}
				badSpec = append(badSpec, cl)
			}
			r.complete(ctx, cl, nil, r.chunkError(cl.c, errs[i]))
		case ctx.Err() != nil:
			r.complete(ctx, cl, nil, r.chunkError(cl.c, errs[i]))
		default:
			if again == nil {
				againErr = errs[i]
			}
			again = append(again, cl)
		}
	}
	if len(badSpec) > 0 {
		// A request that failed as a whole is logged below; bad bytes
		// in a chunk nobody asked for yet still say something is wrong.
		fields := r.chunkFields(badSpec[0].c)
		delete(fields, "file_offset") // unknown for a chunk read ahead
		log.G(ctx).WithError(badSpecErr).WithFields(fields).WithField("chunks", len(badSpec)).
			Warn("chunk read ahead failed verification, dropped")
	}
	if len(again) == 0 {
		return
	}
	log.G(ctx).WithError(againErr).WithFields(r.chunkFields(again[0].c)).WithField("chunks", len(again)).
		Warn("chunk fetch failed, retrying")
	for _, rg := range r.groups(again) {
		datas, errs := r.fetchGroup(ctx, rg)
		failed := 0
		for i, cl := range rg {
			if errs[i] == nil {
				r.fetched(ctx, cl, datas[i])
				continue
			}
			if failed++; failed == 1 && ctx.Err() == nil {
				log.G(ctx).WithError(errs[i]).WithFields(r.chunkFields(cl.c)).Error("chunk fetch failed after retry")
			}
			r.complete(ctx, cl, nil, r.chunkError(cl.c, errs[i]))
		}
	}
}

// fetchGroup reads the compressed bytes of the adjacent chunks of g (in
// blob order) with one request and decodes each, every compressed stream
// once. It returns each chunk's verified data or error.
func (r *Reader) fetchGroup(ctx context.Context, g []claim) ([][]byte, []error) {
	datas, errs := make([][]byte, len(g)), make([]error, len(g))
	start := g[0].c.BlobOffset
	buf := make([]byte, streamsEnd(g)-start)
	n, err := r.src.ReadAt(ctx, buf, start)
	if n < len(buf) {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("%w: source returned %d of %d bytes at blob offset %d", io.ErrUnexpectedEOF, n, len(buf), start)
		}
		for i := range errs {
			errs[i] = err
		}
		return datas, errs
	}
	// A full read may come with io.EOF at the end of the blob.
	metrics.ChunkFetches.Add(float64(len(g)))
	metrics.ChunkFetchBytes.Add(float64(len(buf)))
	asked := int64(0) // bytes of the streams holding a chunk a read asked for
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
			asked += end - off
		}
		r.decodeStream(cs, buf[off-start:end-start], datas[i:j], errs[i:j])
		for _, err := range errs[i:j] {
			if err != nil {
				metrics.VerificationFailures.Inc()
			}
		}
		i = j
	}
	metrics.ReadAheadBytes.Add(float64(max(0, int64(len(buf))-asked)))
	return datas, errs
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
