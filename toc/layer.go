package toc

import (
	"context"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"
)

// Source is the layer blob. The worker's registry client satisfies it; each
// ReadAt is one bounded range request, so Fetch makes at most two calls: the
// footer and the TOC (none, or one, through WithTail).
type Source interface {
	Size() int64
	// ReadAt follows io.ReaderAt: n < len(p) only with an error.
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
}

// Layer is what a worker needs to serve a layer without the registry's help
// for metadata. Only Fetch and Store.Get produce a Layer whose TOC has been
// verified and validated; FetchTo and Store.GetTo verify and validate it
// too, but hand its entries to a Sink and leave TOC nil.
type Layer struct {
	BlobDigest digest.Digest
	BlobSize   int64
	TOCDigest  digest.Digest
	// TOCOffset is where the compressed TOC starts in the blob; every chunk
	// lies before it.
	TOCOffset int64
	// TOC holds the entries with their raw names, exactly as the layer
	// wrote them (estargz.Open would clean them). Names are safe once
	// validated; consumers clean them with path.Clean ("." is the root).
	//
	// A regular file's data is verified against each chunk's ChunkDigest,
	// or, for a file of one chunk without a ChunkDigest, the entry's Digest.
	// A ChunkSize of 0 means "to the end of the file".
	TOC *estargz.JTOC
	// TOCCompressed is the compressed TOC as the blob holds it (a gzip
	// stream of a tar with stargz.index.json), set by Fetch: Store.Put
	// keeps it, and a reload inflates it and verifies its JSON's digest,
	// TOCDigest, again. It is a fraction of the JSON's size (the JSON
	// itself is never held whole: it is decoded as it is inflated); once
	// the layer is stored, a caller that keeps the Layer may set it to
	// nil. Store.Get leaves it nil.
	TOCCompressed []byte

	// verified is TOCCompressed as Fetch verified it: Store.Put need not
	// inflate and hash it again while the slice is the same.
	verified []byte
}

// compressedVerified reports whether TOCCompressed is still the slice
// Fetch verified.
func (l *Layer) compressedVerified() bool {
	return len(l.verified) > 0 && len(l.TOCCompressed) == len(l.verified) && &l.TOCCompressed[0] == &l.verified[0]
}
