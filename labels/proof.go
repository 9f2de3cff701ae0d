package labels

import (
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
)

// BlobDigests is what a worker computed from a layer's whole blob, fetched
// from the registry: the digest and size of the compressed bytes, and the
// digest and size of the uncompressed stream (the DiffID). DiffID is empty
// when the blob does not decompress; DecompressError then says why.
type BlobDigests struct {
	Digest           digest.Digest
	Size             int64
	DiffID           digest.Digest
	UncompressedSize int64
	DecompressError  string
}

// ChainID is the chain ID of a layer with diffID on top of the chain
// parent ("" for a base layer, whose chain ID is its DiffID), as the OCI
// image spec defines it: sha256(parent + " " + diffID).
func ChainID(parent, diffID digest.Digest) digest.Digest {
	if parent == "" {
		return diffID
	}
	return identity.ChainID([]digest.Digest{parent, diffID})
}
