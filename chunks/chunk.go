// Package chunks reads the verified, decompressed contents of a lazily loaded
// layer's files, one eStargz chunk at a time.
//
// Given the layer's Layout, a read that must fetch little from the source
// reads ahead: it fetches a larger contiguous window of the blob and
// verifies and keeps in memory every chunk in it, so that small files
// stored next to each other cost one request per window instead of one
// each. Chunks read ahead are never served or kept unverified, and one that
// fails verification fails no read: it is dropped, and fetched again by the
// read that needs it.
package chunks

import "github.com/opencontainers/go-digest"

// Chunk is one independently compressed piece of a regular file's content,
// as the layer's table of contents describes it. Its decompressed bytes must
// match Digest before anyone sees them.
type Chunk struct {
	// Offset and Size place the chunk in the decompressed file.
	Offset int64
	Size   int64
	// BlobOffset and BlobSize place the chunk's compressed stream in the
	// layer blob. Adjacent chunks of one file are adjacent in the blob.
	BlobOffset int64
	BlobSize   int64
	// InnerOffset is where the chunk starts in the decompressed stream that
	// begins at BlobOffset (non-zero only for zstd:chunked style layers).
	InnerOffset int64
	// Digest is the digest of the chunk's decompressed bytes
	// (the TOC entry's chunkDigest).
	Digest digest.Digest
}
