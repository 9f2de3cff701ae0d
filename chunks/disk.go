package chunks

import (
	"context"

	"github.com/opencontainers/go-digest"
)

// DiskCache is the tier between the memory cache and the source: verified
// chunks kept on disk by digest, shared by every layer and worker of the
// node (package cache implements it).
type DiskCache interface {
	// Get returns the verified bytes of the chunk with digest d and size
	// size, or false: a miss, or a file that failed verification or could
	// not be read, which the implementation reports itself.
	Get(ctx context.Context, d digest.Digest, size int64) ([]byte, bool)
	// Put keeps data, which Reader verified against d and never modifies,
	// without blocking the read that fetched it.
	Put(ctx context.Context, d digest.Digest, data []byte)
}

// fromDisk completes, from the disk cache, the claims it holds and returns
// the others, which must come from the source. The chunks are claimed in
// the in-flight table meanwhile, so concurrent readers of one wait for
// this lookup rather than make their own.
func (r *Reader) fromDisk(ctx context.Context, claims []claim) []claim {
	if r.opts.Disk == nil {
		return claims
	}
	rest := claims[:0:0]
	for _, cl := range claims {
		if data, ok := r.opts.Disk.Get(ctx, cl.c.Digest, cl.c.Size); ok {
			r.complete(ctx, cl, data, nil)
			continue
		}
		rest = append(rest, cl)
	}
	return rest
}

// fetched completes a claim with data verified from the source and keeps
// it on disk, after the readers waiting for it were released.
func (r *Reader) fetched(ctx context.Context, cl claim, data []byte) {
	r.complete(ctx, cl, data, nil)
	if r.opts.Disk != nil {
		r.opts.Disk.Put(ctx, cl.c.Digest, data)
	}
}
