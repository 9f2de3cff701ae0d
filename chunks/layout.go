package chunks

import (
	"cmp"
	"math"
	"slices"
	"sort"
	"strings"
)

// Layout is every chunk of a layer in blob order: the neighbours a fetch
// can be extended over by read-ahead. It is immutable and safe for
// concurrent use.
//
// It holds one Chunk per distinct chunk (the digests are the caller's
// strings, not copies) and nothing per file. When the caller's chunks are
// in blob order already, distinct and usable (a validated eStargz TOC's
// chunks, in TOC order), it keeps the caller's slice rather than a copy: a
// layer of 300,000 files then costs it nothing more.
type Layout struct {
	entries []Chunk // sorted by BlobOffset, then InnerOffset; file offsets unused
}

// NewLayout returns the layout of the chunks all, typically every regular
// file's chunk list of one layer concatenated. Order does not matter;
// chunks that occur twice (same BlobOffset and InnerOffset) are kept once,
// and chunks that no read could use (no size or digest, negative offsets)
// are left out. NewLayout may keep all itself (when it is in order, see
// Layout): the caller must not modify it afterwards.
func NewLayout(all []Chunk) *Layout {
	if inLayoutOrder(all) {
		return &Layout{entries: all[:len(all):len(all)]}
	}
	entries := make([]Chunk, 0, len(all))
	for _, c := range all {
		if !usable(c) {
			continue
		}
		c.Offset = 0
		entries = append(entries, c)
	}
	// The digest only breaks ties between entries that claim the same
	// place, so that which one is kept does not depend on input order.
	slices.SortFunc(entries, func(a, b Chunk) int {
		if a.BlobOffset != b.BlobOffset {
			return cmp.Compare(a.BlobOffset, b.BlobOffset)
		}
		if a.InnerOffset != b.InnerOffset {
			return cmp.Compare(a.InnerOffset, b.InnerOffset)
		}
		return strings.Compare(string(a.Digest), string(b.Digest))
	})
	entries = slices.CompactFunc(entries, func(a, b Chunk) bool {
		return a.BlobOffset == b.BlobOffset && a.InnerOffset == b.InnerOffset
	})
	if cap(entries)-len(entries) > len(entries)/8 {
		// Many duplicates: do not keep the room they took.
		entries = append(make([]Chunk, 0, len(entries)), entries...)
	}
	return &Layout{entries: entries}
}

// usable reports whether a read could use chunk c.
func usable(c Chunk) bool {
	return c.Size > 0 && c.BlobSize > 0 && c.BlobOffset >= 0 && c.InnerOffset >= 0 && c.Digest != ""
}

// inLayoutOrder reports whether all is a layout as it is: every chunk
// usable, strictly ordered by (BlobOffset, InnerOffset).
func inLayoutOrder(all []Chunk) bool {
	for i, c := range all {
		if !usable(c) {
			return false
		}
		if i == 0 {
			continue
		}
		p := all[i-1]
		if c.BlobOffset < p.BlobOffset || c.BlobOffset == p.BlobOffset && c.InnerOffset <= p.InnerOffset {
			return false
		}
	}
	return true
}

// Len returns the number of distinct chunks in the layout.
func (l *Layout) Len() int { return len(l.entries) }

// firstAt returns the index of the first entry whose stream starts at or
// after blob offset off.
func (l *Layout) firstAt(off int64) int {
	return sort.Search(len(l.entries), func(i int) bool { return l.entries[i].BlobOffset >= off })
}

// chunk returns entry i. Its file offset is unknown and zero.
func (l *Layout) chunk(i int) Chunk {
	c := l.entries[i]
	c.Offset = 0
	return c
}

// Chunks returns every chunk of the layout in blob order (file offsets
// zero), e.g. for Reader.Fill of a whole layer.
func (l *Layout) Chunks() []Chunk {
	return l.Before(math.MaxInt64)
}
