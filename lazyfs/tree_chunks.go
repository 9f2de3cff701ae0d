package lazyfs

import (
	"math"
	"slices"

	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/chunks"
)

// collectOffsets gathers the distinct offsets at which compressed streams
// start in the blob: a chunk's stream ends where the next one begins.
func (b *builder) collectOffsets() error {
	b.offsets = make([]int64, 0, len(b.entries))
	data := 0
	for _, e := range b.entries {
		if e.Offset > 0 {
			b.offsets = append(b.offsets, e.Offset)
		}
		if e.Type == "reg" || e.Type == "chunk" {
			data++
		}
	}
	// At most one chunk per data entry: allocate the chunk list once.
	b.t.chunks = make([]chunks.Chunk, 0, data)
	slices.Sort(b.offsets)
	b.offsets = slices.Compact(b.offsets)
	return nil
}

// blobSize returns the length of the compressed stream starting at off: up
// to the next larger offset of any entry, or to the TOC for the last one.
func (b *builder) blobSize(off int64) (int64, bool) {
	if off <= 0 || off >= b.tocOffset {
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

// addChunks records the chunk list of regular file entry i in node n. The
// file's first chunk is the entry itself; "chunk" entries follow it.
func (b *builder) addChunks(n *node, i int) error {
	reg := b.entries[i]
	size := reg.Size
	if size == 0 {
		return nil
	}
	t := b.t
	first := len(t.chunks)
	var covered int64
	for j := i; j < len(b.entries); j++ {
		e := b.entries[j]
		if j > i && e.Type != "chunk" {
			break
		}
		c := chunks.Chunk{
			Offset:      e.ChunkOffset,
			Size:        e.ChunkSize,
			BlobOffset:  e.Offset,
			InnerOffset: e.InnerOffset,
		}
		if c.Size == 0 {
			c.Size = size - c.Offset
		}
		if c.Offset != covered || c.Size <= 0 || c.Size > size-c.Offset {
			return b.invalid(j, "chunk [%d, +%d) does not continue the file at %d", c.Offset, c.Size, covered)
		}
		covered += c.Size
		if c.InnerOffset < 0 {
			return b.invalid(j, "negative inner offset %d", c.InnerOffset)
		}
		var ok bool
		if c.BlobSize, ok = b.blobSize(c.BlobOffset); !ok {
			return b.invalid(j, "chunk offset %d outside the blob's payload", c.BlobOffset)
		}
		dgst := e.ChunkDigest
		if dgst == "" && j == i && !b.followedByChunk(i) {
			// A file of one chunk may carry only the file's digest.
			dgst = reg.Digest
		}
		d, err := parseDigest(dgst)
		if err != nil {
			return b.invalid(j, "no usable chunk digest: %v", err)
		}
		c.Digest = d
		t.chunks = append(t.chunks, c)
	}
	if covered != size {
		return b.invalid(i, "chunks cover %d of %d bytes", covered, size)
	}
	if len(t.chunks) > math.MaxUint32 {
		return b.invalid(i, "too many chunks")
	}
	n.first, n.count = uint32(first), uint32(len(t.chunks)-first)
	return nil
}

// parseDigest is digest.Parse with a fast path for sha256, which is what
// eStargz writes: go-digest validates with a regular expression, which
// costs more than the rest of NewTree for a large layer.
func parseDigest(s string) (digest.Digest, error) {
	const prefix = "sha256:"
	if len(s) != len(prefix)+64 || s[:len(prefix)] != prefix {
		return digest.Parse(s)
	}
	for i := len(prefix); i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return digest.Parse(s)
		}
	}
	return digest.Digest(s), nil
}

// followedByChunk reports whether entry i has further chunks.
func (b *builder) followedByChunk(i int) bool {
	return i+1 < len(b.entries) && b.entries[i+1] != nil && b.entries[i+1].Type == "chunk"
}
