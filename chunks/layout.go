package chunks

import (
	"cmp"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Layout is every chunk of a layer in blob order: the neighbours a fetch
// can be extended over by read-ahead. It is immutable and safe for
// concurrent use.
//
// It holds one 48-byte entry per distinct chunk (the digests are the
// caller's strings, not copies) and nothing per file, so a layer of
// 300,000 files costs about 15 MiB.
type Layout struct {
	entries []layoutEntry // sorted by blobOffset, then innerOffset
}

// layoutEntry is a Chunk without its file offset, which read-ahead has no
// use for.
type layoutEntry struct {
	blobOffset  int64
	blobSize    int64
	innerOffset int64
	size        int64
	digest      digest.Digest
}

// NewLayout returns the layout of the chunks all, typically every regular
// file's chunk list of one layer concatenated. Order does not matter;
// chunks that occur twice (same BlobOffset and InnerOffset) are kept once,
// and chunks that no read could use (no size or digest, negative offsets)
// are left out. NewLayout keeps no reference to all.
func NewLayout(all []Chunk) *Layout {
	entries := make([]layoutEntry, 0, len(all))
	for _, c := range all {
		if c.Size <= 0 || c.BlobSize <= 0 || c.BlobOffset < 0 || c.InnerOffset < 0 || c.Digest == "" {
			continue
		}
		entries = append(entries, layoutEntry{
			blobOffset:  c.BlobOffset,
			blobSize:    c.BlobSize,
			innerOffset: c.InnerOffset,
			size:        c.Size,
			digest:      c.Digest,
		})
	}
	// The digest only breaks ties between entries that claim the same
	// place, so that which one is kept does not depend on input order.
	slices.SortFunc(entries, func(a, b layoutEntry) int {
		if a.blobOffset != b.blobOffset {
			return cmp.Compare(a.blobOffset, b.blobOffset)
		}
		if a.innerOffset != b.innerOffset {
			return cmp.Compare(a.innerOffset, b.innerOffset)
		}
		return strings.Compare(string(a.digest), string(b.digest))
	})
	entries = slices.CompactFunc(entries, func(a, b layoutEntry) bool {
		return a.blobOffset == b.blobOffset && a.innerOffset == b.innerOffset
	})
	if cap(entries)-len(entries) > len(entries)/8 {
		// Many duplicates: do not keep the room they took.
		entries = slices.Clone(entries)
	}
	return &Layout{entries: entries}
}

// Len returns the number of distinct chunks in the layout.
func (l *Layout) Len() int { return len(l.entries) }

// firstAt returns the index of the first entry whose stream starts at or
// after blob offset off.
func (l *Layout) firstAt(off int64) int {
	return sort.Search(len(l.entries), func(i int) bool { return l.entries[i].blobOffset >= off })
}

// chunk returns entry i as a Chunk. Its file offset is unknown and zero.
func (l *Layout) chunk(i int) Chunk {
	e := &l.entries[i]
	return Chunk{
		Size:        e.size,
		BlobOffset:  e.blobOffset,
		BlobSize:    e.blobSize,
		InnerOffset: e.innerOffset,
		Digest:      e.digest,
	}
}

// Chunks returns every chunk of the layout in blob order (file offsets
// zero), e.g. for Reader.Fill of a whole layer.
func (l *Layout) Chunks() []Chunk {
	return l.Before(math.MaxInt64)
}
