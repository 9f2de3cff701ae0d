package worker

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"slices"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/chunks"
)

// A proof reads the whole blob once (issue 14, point 1): it is also issue
// 11's background fetch. While the blob streams by, every chunk the TOC
// places in it is decoded, checked against its TOC chunk digest and, if it
// matches, stored in the node's chunk cache, so that a proven layer is also
// fully cached and costs the registry nothing more. A chunk that does not
// match is not stored (the proof itself still judges the whole blob).

// Bounds on what the proof buffers to cache a chunk: the compressed stream
// of one group of chunks (those sharing a blob offset) and one decompressed
// chunk. The TOC's validation keeps real layers far below them (eStargz
// chunks are 4 MiB by default); a larger one is proven but not cached.
// Variables only so that a test can pin them at their edge.
var (
	maxProofGroup int64 = 64 << 20
	maxProofChunk int64 = 64 << 20
)

// chunkPutter is the part of the chunk cache a proof stores into.
type chunkPutter interface {
	Put(ctx context.Context, d digest.Digest, data []byte)
}

// chunkCacher is an io.Writer fed the blob from its first byte to its last;
// it stores the verified chunks of cs as their compressed bytes go by.
type chunkCacher struct {
	ctx   context.Context
	cache chunkPutter
	cs    []chunks.Chunk
	// groups are the indexes into cs of the chunks sharing a blob offset,
	// in blob order; next is the group whose bytes are being collected.
	groups [][]int32
	next   int
	pos    int64  // blob offset of the next byte written
	buf    []byte // the current group's compressed bytes so far
	// yield, if set, is called before each chunk is decoded and hashed:
	// the proof stands aside for reads there too (yieldReader.wait). An
	// error (the proof's context ended) stops the caching.
	yield func() error

	stored, refused int
}

func newChunkCacher(ctx context.Context, cache chunkPutter, cs []chunks.Chunk) *chunkCacher {
	idx := make([]int32, len(cs))
	for i := range idx {
		idx[i] = int32(i)
	}
	slices.SortFunc(idx, func(a, b int32) int {
		if d := cs[a].BlobOffset - cs[b].BlobOffset; d != 0 {
			return int(min(max(d, -1), 1))
		}
		return int(min(max(cs[a].InnerOffset-cs[b].InnerOffset, -1), 1))
	})
	c := &chunkCacher{ctx: ctx, cache: cache, cs: cs}
	var end int64
	for _, i := range idx {
		ch := cs[i]
		if n := len(c.groups); n > 0 && cs[c.groups[n-1][0]].BlobOffset == ch.BlobOffset {
			c.groups[n-1] = append(c.groups[n-1], i)
			end = max(end, ch.BlobOffset+ch.BlobSize)
			continue
		}
		if ch.BlobOffset < end {
			continue // overlaps the group before: one pass cannot cache it
		}
		c.groups = append(c.groups, []int32{i})
		end = ch.BlobOffset + ch.BlobSize
	}
	return c
}

// span returns the compressed range of group g.
func (c *chunkCacher) span(g []int32) (start, end int64) {
	start = c.cs[g[0]].BlobOffset
	for _, i := range g {
		end = max(end, c.cs[i].BlobOffset+c.cs[i].BlobSize)
	}
	return start, end
}

// Write never fails: caching is a by-product of the proof.
func (c *chunkCacher) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && c.next < len(c.groups) {
		start, end := c.span(c.groups[c.next])
		if end-start > maxProofGroup {
			c.refused += len(c.groups[c.next])
			c.next++
			c.buf = c.buf[:0]
			continue
		}
		if c.pos+int64(len(p)) <= start { // before the group
			break
		}
		if c.pos < start { // skip to it
			p = p[start-c.pos:]
			c.pos = start
		}
		take := min(int64(len(p)), end-c.pos)
		c.buf = append(c.buf, p[:take]...)
		p = p[take:]
		c.pos += take
		if c.pos == end {
			c.storeGroup(c.groups[c.next])
			c.next++
			c.buf = c.buf[:0]
		}
	}
	c.pos += int64(len(p))
	return n, nil
}

// storeGroup decodes the chunks of a group from its compressed bytes and
// stores those that match their digest.
func (c *chunkCacher) storeGroup(g []int32) {
	zr, err := gzip.NewReader(bytes.NewReader(c.buf))
	if err != nil {
		c.refused += len(g)
		return
	}
	var pos int64
	for k, i := range g {
		if c.yield != nil {
			if err := c.yield(); err != nil {
				c.refused += len(g) - k
				return
			}
		}
		ch := c.cs[i]
		if ch.Size > maxProofChunk || ch.InnerOffset < pos || ch.Digest.Validate() != nil {
			c.refused += len(g) - k
			return
		}
		if _, err := io.CopyN(io.Discard, zr, ch.InnerOffset-pos); err != nil {
			c.refused += len(g) - k
			return
		}
		data := make([]byte, ch.Size)
		if _, err := io.ReadFull(zr, data); err != nil {
			c.refused += len(g) - k
			return
		}
		pos = ch.InnerOffset + ch.Size
		// The guard: only bytes that match the TOC's chunk digest enter
		// the cache, which every worker then serves without checking
		// the registry again (it checks the digest on read back too).
		if ch.Digest.Algorithm().FromBytes(data) != ch.Digest {
			c.refused++
			continue
		}
		c.cache.Put(c.ctx, ch.Digest, data)
		c.stored++
	}
}

// logResult says what the proof cached.
func (c *chunkCacher) logResult(ctx context.Context) {
	l := log.G(ctx).WithField("chunks_cached", c.stored).WithField("chunks_not_cached", c.refused)
	if c.refused > 0 {
		l.Warn("proof cached the layer's chunks, except those that did not match their digests or were too large")
		return
	}
	l.Debug("proof cached the layer's chunks")
}
