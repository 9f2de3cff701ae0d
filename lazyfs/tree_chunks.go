package lazyfs

import (
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/stargz-snapshotter/estargz"

	"github.com/lazyfs/lazyfs/internal/doubling"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/chunks"
)

// openFile is the regular file whose chunk entries may follow: its first
// chunk is the "reg" entry itself.
type openFile struct {
	open    bool   // its chunks are kept (a non-empty file of the tree)
	rec     uint32 // its node, in recs
	entry   int    // its index in the TOC
	name    string // its raw name
	size    int64
	covered int64 // bytes its chunks cover so far
	first   int   // index of its first chunk in the tree's chunks
	// digest is the file's digest: a file of one chunk may carry only
	// that. pending is whether its first chunk has no chunk digest yet.
	digest  string
	pending bool
}

// openFile starts the chunk list of regular file entry e, the i-th, whose
// node will be recs[rec].
func (b *TreeBuilder) openFile(i int, e *estargz.TOCEntry, rec uint32) error {
	if e.Size == 0 {
		return nil
	}
	b.file = openFile{open: true, rec: rec, entry: i, name: e.Name, size: e.Size, first: len(b.t.chunks), digest: e.Digest}
	return b.addChunk(i, e)
}

// addChunk adds the chunk described by entry e, the i-th: the "reg" entry
// of the open file or a "chunk" entry after it. Chunks of a file the tree
// does not keep (hidden, a whiteout, empty) are skipped.
func (b *TreeBuilder) addChunk(i int, e *estargz.TOCEntry) error {
	f := &b.file
	if !f.open {
		return nil
	}
	if f.pending {
		// The first chunk had only the file's digest, which covers one
		// chunk, and another follows.
		return invalid(f.entry, f.name, "no usable chunk digest for the first of several chunks")
	}
	c := chunks.Chunk{
		Offset:      e.ChunkOffset,
		Size:        e.ChunkSize,
		BlobOffset:  e.Offset,
		InnerOffset: e.InnerOffset,
	}
	if c.Size == 0 {
		c.Size = f.size - c.Offset
	}
	if c.Offset != f.covered || c.Size <= 0 || c.Size > f.size-c.Offset {
		return invalid(i, e.Name, "chunk [%d, +%d) does not continue the file at %d", c.Offset, c.Size, f.covered)
	}
	f.covered += c.Size
	if c.InnerOffset < 0 {
		return invalid(i, e.Name, "negative inner offset %d", c.InnerOffset)
	}
	if c.BlobOffset <= 0 {
		return invalid(i, e.Name, "chunk offset %d outside the blob's payload", c.BlobOffset)
	}
	if e.ChunkDigest == "" && i == f.entry {
		f.pending = true // endFile decides, once it knows whether another chunk follows
	} else {
		d, err := parseDigest(e.ChunkDigest)
		if err != nil {
			return invalid(i, e.Name, "no usable chunk digest: %v", err)
		}
		c.Digest = d
	}
	b.t.chunks = doubling.Append(b.t.chunks, c)
	return nil
}

// endFile closes the open file: its chunks must cover it, and it gets
// them.
func (b *TreeBuilder) endFile() error {
	f := &b.file
	if !f.open {
		return nil
	}
	f.open = false
	t := &b.t
	if f.covered != f.size {
		return invalid(f.entry, f.name, "chunks cover %d of %d bytes", f.covered, f.size)
	}
	if f.pending {
		// A file of one chunk may carry only the file's digest.
		d, err := parseDigest(f.digest)
		if err != nil {
			return invalid(f.entry, f.name, "no usable chunk digest: %v", err)
		}
		t.chunks[f.first].Digest = d
	}
	if len(t.chunks) > maxIndex {
		return invalid(f.entry, f.name, "too many chunks")
	}
	n := &b.recs[f.rec]
	n.first, n.count = uint32(f.first), uint32(len(t.chunks)-f.first)
	return nil
}

// setBlobSizes gives every chunk the length of its compressed stream: up
// to the next larger offset of any entry, or to the TOC for the last one.
func (b *TreeBuilder) setBlobSizes() error {
	slices.Sort(b.offsets)
	b.offsets = slices.Compact(b.offsets)
	for i := range b.t.chunks {
		c := &b.t.chunks[i]
		size, ok := b.blobSize(c.BlobOffset)
		if !ok {
			return fmt.Errorf("chunk at blob offset %d is outside the blob's payload (the TOC is at %d): %w", c.BlobOffset, b.tocOffset, errdefs.ErrInvalidArgument)
		}
		c.BlobSize = size
	}
	b.offsets = nil
	return nil
}

// blobSize returns the length of the compressed stream starting at off: up
// to the next larger offset of any entry, or to the TOC for the last one.
func (b *TreeBuilder) blobSize(off int64) (int64, bool) {
	if off >= b.tocOffset { // and off > 0: addChunk refuses others
		return 0, false
	}
	i, found := slices.BinarySearch(b.offsets, off)
	if found {
		i++
	}
	end := b.tocOffset
	if i < len(b.offsets) {
		end = b.offsets[i]
	}
	if end > b.tocOffset {
		return 0, false
	}
	return end - off, true
}

// parseDigest is digest.Parse with a fast path for sha256, which is what
// eStargz writes: go-digest validates with a regular expression, which
// costs more than the rest of NewTree for a large layer. A sha256 digest of
// the right length is checked here in full (lowercase hex, as go-digest
// wants it); anything else is left to digest.Parse.
func parseDigest(s string) (digest.Digest, error) {
	hex, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hex) != 64 {
		return digest.Parse(s)
	}
	for _, c := range []byte(hex) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", fmt.Errorf("digest %q: %w", s, digest.ErrDigestInvalidFormat)
		}
	}
	return digest.Digest(s), nil
}
