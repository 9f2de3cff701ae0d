package worker

import (
	"bytes"
	"compress/gzip"
	"context"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/chunks"
)

type putRecorder map[digest.Digest][]byte

func (p putRecorder) Put(_ context.Context, d digest.Digest, data []byte) { p[d] = data }

// gzipChunks builds a blob of one gzip member per content, after a
// prefix, and the chunk list placing each.
func gzipChunks(t *testing.T, prefix int, contents ...[]byte) ([]byte, []chunks.Chunk) {
	t.Helper()
	blob := bytes.Repeat([]byte{0xff}, prefix)
	var cs []chunks.Chunk
	for _, c := range contents {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(c)
		zw.Close()
		cs = append(cs, chunks.Chunk{Size: int64(len(c)), BlobOffset: int64(len(blob)), BlobSize: int64(b.Len()), Digest: digest.FromBytes(c)})
		blob = append(blob, b.Bytes()...)
	}
	return blob, cs
}

// feed writes blob to c in pieces of n bytes, as a stream arrives.
func feed(c *chunkCacher, blob []byte, n int) {
	for len(blob) > 0 {
		k := min(n, len(blob))
		c.Write(blob[:k])
		blob = blob[k:]
	}
}

// TestChunkCacherStoresVerifiedChunks: every chunk is stored whatever the
// pieces the stream arrives in; a chunk whose bytes differ from its digest
// is not.
func TestChunkCacherStoresVerifiedChunks(t *testing.T) {
	blob, cs := gzipChunks(t, 7, []byte("first chunk"), []byte("second chunk"), bytes.Repeat([]byte("x"), 5000))
	cs[1].Digest = digest.FromString("not the second chunk")
	for _, piece := range []int{1, 3, 64, len(blob)} {
		got := putRecorder{}
		c := newChunkCacher(context.Background(), got, cs)
		feed(c, blob, piece)
		if len(got) != 2 || got[cs[0].Digest] == nil || got[cs[2].Digest] == nil || c.stored != 2 || c.refused != 1 {
			t.Errorf("pieces of %d: stored %d (refused %d), want the first and third chunk", piece, c.stored, c.refused)
		}
	}
}

// TestChunkCacherBounds pins both bounds at their edge: a group's
// compressed size and a chunk's decompressed size at the limit are
// cached, one byte more are not.
func TestChunkCacherBounds(t *testing.T) {
	content := bytes.Repeat([]byte("y"), 1000)
	blob, cs := gzipChunks(t, 0, content)
	defer func(g, c int64) { maxProofGroup, maxProofChunk = g, c }(maxProofGroup, maxProofChunk)
	for _, tc := range []struct {
		name         string
		group, chunk int64
		want         int
	}{
		{"group at the limit", cs[0].BlobSize, 1 << 20, 1},
		{"group over the limit", cs[0].BlobSize - 1, 1 << 20, 0},
		{"chunk at the limit", 1 << 20, 1000, 1},
		{"chunk over the limit", 1 << 20, 999, 0},
	} {
		maxProofGroup, maxProofChunk = tc.group, tc.chunk
		got := putRecorder{}
		c := newChunkCacher(context.Background(), got, cs)
		feed(c, blob, 100)
		if len(got) != tc.want {
			t.Errorf("%s: %d chunks cached, want %d", tc.name, len(got), tc.want)
		}
	}
}

// TestChunkCacherYieldsBeforeDecoding: the proof stands aside for reads
// before it decodes and hashes each chunk (its longest stretches of CPU),
// not only between reads of its stream; a yield that fails (the proof's
// context ended) stores nothing more.
func TestChunkCacherYieldsBeforeDecoding(t *testing.T) {
	blob, cs := gzipChunks(t, 3, []byte("first chunk"), []byte("second chunk"), []byte("third chunk"))
	got := putRecorder{}
	c := newChunkCacher(context.Background(), got, cs)
	var yields []int // chunks stored when each yield came
	c.yield = func() error {
		yields = append(yields, len(got))
		return nil
	}
	feed(c, blob, len(blob))
	if want := []int{0, 1, 2}; !slices.Equal(yields, want) {
		t.Errorf("yields came with %v chunks stored, want one before each chunk: %v", yields, want)
	}

	got = putRecorder{}
	c = newChunkCacher(context.Background(), got, cs)
	c.yield = func() error {
		if len(got) == 1 {
			return context.Canceled
		}
		return nil
	}
	feed(c, blob, len(blob))
	if len(got) != 1 || c.stored != 1 {
		t.Errorf("after a failed yield: stored %d chunks, want only the one before it", len(got))
	}
}
