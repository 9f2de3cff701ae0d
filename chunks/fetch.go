package chunks

import (
	"context"
	"fmt"
	"io"

	"github.com/containerd/log"
	"github.com/lazyfs/lazyfs/metrics"
	"golang.org/x/sync/errgroup"
)

// fetch fetches, verifies and completes every claim of mine: chunks
// adjacent in the blob share one range request up to MaxRequestSize, and
// up to Parallel requests run at once. A chunk that fails is fetched once
// more before its error is final.
func (r *Reader) fetch(ctx context.Context, mine []claim) {
	var eg errgroup.Group
	eg.SetLimit(r.opts.Parallel)
	for _, g := range r.groups(mine) {
		eg.Go(func() error {
			r.fetchWithRetry(ctx, g)
			return nil // outcomes travel in the claims
		})
	}
	_ = eg.Wait()
}

// groups splits claims (in blob order, as a file's chunks are) into runs
// of adjacent chunks of at most MaxRequestSize compressed bytes each.
func (r *Reader) groups(claims []claim) [][]claim {
	var out [][]claim
	var cur []claim
	var curBytes int64
	for _, cl := range claims {
		if n := len(cur); n > 0 {
			prev := cur[n-1].c
			adjacent := prev.BlobOffset+prev.BlobSize == cl.c.BlobOffset
			if !adjacent || curBytes+cl.c.BlobSize > r.opts.MaxRequestSize {
				out = append(out, cur)
				cur, curBytes = nil, 0
			}
		}
		cur = append(cur, cl)
		curBytes += cl.c.BlobSize
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// fetchWithRetry fetches one group and completes each of its claims,
// retrying the chunks that failed once (regrouped, since the failures need
// not be adjacent).
func (r *Reader) fetchWithRetry(ctx context.Context, g []claim) {
	datas, errs := r.fetchGroup(ctx, g)
	var again []claim
	var firstErr error
	for i, cl := range g {
		switch {
		case errs[i] == nil:
			r.complete(ctx, cl, datas[i], nil)
		case ctx.Err() != nil:
			r.complete(ctx, cl, nil, r.chunkError(cl.c, errs[i]))
		default:
			again = append(again, cl)
			if firstErr == nil {
				firstErr = errs[i]
			}
		}
	}
	if len(again) == 0 {
		return
	}
	log.G(ctx).WithError(firstErr).WithFields(r.chunkFields(again[0].c)).WithField("chunks", len(again)).
		Warn("chunk fetch failed, retrying")
	for _, rg := range r.groups(again) {
		datas, errs := r.fetchGroup(ctx, rg)
		failed := 0
		for i, cl := range rg {
			if errs[i] == nil {
				r.complete(ctx, cl, datas[i], nil)
				continue
			}
			if failed++; failed == 1 && ctx.Err() == nil {
				log.G(ctx).WithError(errs[i]).WithFields(r.chunkFields(cl.c)).Error("chunk fetch failed after retry")
			}
			r.complete(ctx, cl, nil, r.chunkError(cl.c, errs[i]))
		}
	}
}

// fetchGroup reads the compressed bytes of the adjacent chunks of g with
// one request and decodes each. It returns each chunk's verified data or
// error.
func (r *Reader) fetchGroup(ctx context.Context, g []claim) ([][]byte, []error) {
	datas, errs := make([][]byte, len(g)), make([]error, len(g))
	start := g[0].c.BlobOffset
	last := g[len(g)-1].c
	buf := make([]byte, last.BlobOffset+last.BlobSize-start)
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
	for i, cl := range g {
		off := cl.c.BlobOffset - start
		datas[i], errs[i] = r.decode(cl.c, buf[off:off+cl.c.BlobSize])
		if errs[i] != nil {
			metrics.VerificationFailures.Inc()
		}
	}
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
