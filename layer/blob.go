package layer

import (
	"github.com/opencontainers/go-digest"
)

// BlobDigests is what a worker computed from a layer's whole blob, fetched
// from the registry: the digest and size of the compressed bytes, and the
// digest and size of the uncompressed stream (the DiffID). DiffID is empty
// when the blob does not decompress; DecompressError then says why. The
// snapshotter proves a chain ID with it.
type BlobDigests struct {
	Digest           digest.Digest
	Size             int64
	DiffID           digest.Digest
	UncompressedSize int64
	DecompressError  string
}
