package toc

import (
	"errors"
	"fmt"
	"math"

	"github.com/containerd/stargz-snapshotter/estargz"
)

// maxInflateRatio bounds how many bytes deflate can expand one compressed
// byte into (1032:1 is the format's limit). A chunk claiming more bytes
// than its compressed stream can hold is a lie that would make a reader
// allocate or wait for data that is not there.
const maxInflateRatio = 1032

// fileState follows a regular file across its chunk entries.
type fileState struct {
	id     string // the "reg" entry's raw name
	name   string // cleaned
	size   int64
	digest bool  // whether the "reg" entry has a Digest
	next   int64 // file offset the next chunk must start at
	// chunks counts the file's chunks; allDigests is whether each has a
	// ChunkDigest.
	chunks     int
	allDigests bool
}

// streamGroup is one compressed stream (gzip member) in the blob and the
// decompressed bytes its chunks need from it. Chunks share a stream only
// when built with a minimum chunk size (estargz WithMinChunkSize), and are
// then told apart by InnerOffset.
type streamGroup struct {
	id     string // the entry that needs the most bytes
	offset int64  // compressed offset of the stream
	end    int64  // InnerOffset + size of its last chunk
}

func (v *validator) reg(id, name string, e *estargz.TOCEntry) error {
	if e.Size < 0 {
		return refuse(ReasonBadSize, id, fmt.Errorf("negative size %d", e.Size))
	}
	if e.Digest != "" {
		if err := checkDigest(e.Digest); err != nil {
			return refuse(ReasonMalformed, id, fmt.Errorf("file digest: %w", err))
		}
	}
	if e.Size == 0 {
		return checkNoData(id, e)
	}
	if e.ChunkOffset != 0 {
		return refuse(ReasonBadSize, id, fmt.Errorf("first chunk starts at file offset %d, not 0", e.ChunkOffset))
	}
	v.file = fileState{id: id, name: name, size: e.Size, digest: e.Digest != "", allDigests: true}
	v.inFile = true
	return v.dataChunk(e, true)
}

// chunk checks a "chunk" entry: the second and later chunks of the regular
// file before it.
func (v *validator) chunk(id string, e *estargz.TOCEntry) error {
	if !v.inFile {
		return refuse(ReasonMalformed, id, errors.New("chunk entry does not follow a regular file with data"))
	}
	f := &v.file
	if e.Name != "" {
		// estargz ignores a chunk's name and uses the file's; a name that
		// differs is not something a builder writes.
		if checkName(e.Name) != nil || cleanName(e.Name) != f.name {
			return refuse(ReasonMalformed, f.id, fmt.Errorf("chunk entry names %q", e.Name))
		}
	}
	if e.Size != 0 {
		return refuse(ReasonBadSize, f.id, fmt.Errorf("chunk entry has a size of %d", e.Size))
	}
	if e.Digest != "" {
		if err := checkDigest(e.Digest); err != nil {
			return refuse(ReasonMalformed, f.id, fmt.Errorf("chunk entry digest: %w", err))
		}
	}
	return v.dataChunk(e, false)
}

// dataChunk checks where a chunk (the "reg" entry, first, or a "chunk"
// entry) lies in the file and in the blob.
func (v *validator) dataChunk(e *estargz.TOCEntry, first bool) error {
	f := &v.file
	size := f.size
	if e.ChunkOffset != f.next {
		return refuse(ReasonBadSize, f.id, fmt.Errorf("chunk at file offset %d where %d was expected (gap or overlap)", e.ChunkOffset, f.next))
	}
	remain := size - f.next
	if remain == 0 {
		return refuse(ReasonBadSize, f.id, fmt.Errorf("chunk past the end of the %d-byte file", size))
	}
	cs := e.ChunkSize
	switch {
	case cs < 0:
		return refuse(ReasonBadSize, f.id, fmt.Errorf("negative chunk size %d", cs))
	case cs == 0:
		cs = remain // 0 means "to the end of the file"
	case cs > remain:
		return refuse(ReasonBadSize, f.id, fmt.Errorf("chunk of %d bytes at file offset %d exceeds the %d-byte file", cs, f.next, size))
	}
	if cs > MaxChunkSize {
		// A reader holds a whole decompressed chunk in memory to verify it.
		return refuse(ReasonBadSize, f.id, fmt.Errorf("chunk of %d bytes exceeds the %d-byte limit", cs, MaxChunkSize))
	}
	f.next += cs
	f.chunks++
	if e.ChunkDigest == "" {
		f.allDigests = false
	} else if !first || e.ChunkDigest != e.Digest {
		// A one-chunk file's chunk digest is usually its file digest,
		// which reg checked already.
		if err := checkDigest(e.ChunkDigest); err != nil {
			return refuse(ReasonMalformed, f.id, fmt.Errorf("chunk digest: %w", err))
		}
	}

	if e.Offset < 0 || e.Offset >= v.tocOffset {
		return refuse(ReasonBadOffset, f.id, fmt.Errorf("chunk at blob offset %d, outside [0, %d) before the TOC", e.Offset, v.tocOffset))
	}
	if e.InnerOffset < 0 {
		return refuse(ReasonBadOffset, f.id, fmt.Errorf("negative inner offset %d", e.InnerOffset))
	}
	if e.InnerOffset > math.MaxInt64-cs {
		return refuse(ReasonBadSize, f.id, fmt.Errorf("inner offset %d plus chunk size %d overflows", e.InnerOffset, cs))
	}
	end := e.InnerOffset + cs
	g := &v.group
	switch {
	case !v.hasGroup || e.Offset > g.offset:
		if v.hasGroup {
			// The previous stream ends where this one starts.
			v.checkSpan(e.Offset)
		}
		v.group, v.hasGroup = streamGroup{id: f.id, offset: e.Offset, end: end}, true
	case e.Offset == g.offset:
		if e.InnerOffset < g.end {
			return refuse(ReasonBadOffset, f.id, fmt.Errorf("chunk at inner offset %d overlaps the previous chunk, which ends at %d", e.InnerOffset, g.end))
		}
		g.id, g.end = f.id, end
	default:
		return refuse(ReasonBadOffset, f.id, fmt.Errorf("chunk at blob offset %d comes after one at %d: chunks must be in blob order", e.Offset, g.offset))
	}
	return nil
}

// endFile checks that the regular file being read is complete and
// verifiable: its chunks cover it, and each can be checked against a digest.
func (v *validator) endFile() error {
	if !v.inFile {
		return nil
	}
	v.inFile = false
	f := &v.file
	if f.next != f.size {
		return refuse(ReasonBadSize, f.id, fmt.Errorf("chunks cover %d of %d bytes", f.next, f.size))
	}
	if !f.allDigests && (f.chunks != 1 || !f.digest) {
		return refuse(ReasonUnverifiable, f.id, fmt.Errorf("%d-byte file in %d chunks lacks chunk digests", f.size, f.chunks))
	}
	return nil
}

// checkSpan bounds the decompressed bytes the last compressed stream's
// chunks need by its compressed length, from its offset to next (where the
// next stream starts, or the TOC). The first stream that fails is kept in
// spanErr: finish reports it once every entry passed its own checks.
func (v *validator) checkSpan(next int64) {
	g := v.group
	span := next - g.offset
	if v.spanErr == nil && span <= math.MaxInt64/maxInflateRatio && g.end > span*maxInflateRatio {
		v.spanErr = refuse(ReasonBadSize, g.id, fmt.Errorf("chunk needs %d decompressed bytes from a %d-byte compressed stream", g.end, span))
	}
}

// checkNoData refuses data fields on an entry without data (any type but a
// non-empty regular file): readers that look for the next chunk's offset
// would otherwise trip over them.
func checkNoData(id string, e *estargz.TOCEntry) error {
	switch {
	case e.Size != 0 || e.ChunkSize != 0:
		return refuse(ReasonBadSize, id, fmt.Errorf("a %s entry without data has size %d, chunk size %d", e.Type, e.Size, e.ChunkSize))
	case e.Offset != 0 || e.InnerOffset != 0 || e.ChunkOffset != 0:
		return refuse(ReasonBadOffset, id, fmt.Errorf("a %s entry without data has offset %d, inner offset %d, chunk offset %d", e.Type, e.Offset, e.InnerOffset, e.ChunkOffset))
	}
	return nil
}
