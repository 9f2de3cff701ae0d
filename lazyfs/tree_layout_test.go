package lazyfs

import (
	"slices"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"

	"github.com/lazyfs/lazyfs/chunks"
)

func TestTreeChunks(t *testing.T) {
	tr := mustTree(t, []*estargz.TOCEntry{
		dirEntry("etc/"),
		reg("etc/passwd", 10, 100, 1),
		{Name: "etc/hosts", Type: "hardlink", LinkName: "etc/passwd"},
		{Name: "usr/lib/big.so", Type: "reg", Size: 250, Offset: 110, ChunkSize: 100, ChunkDigest: testDigest(2), Mode: 0o644},
		{Name: "usr/lib/big.so", Type: "chunk", Offset: 190, ChunkOffset: 100, ChunkSize: 100, ChunkDigest: testDigest(3)},
		{Name: "usr/lib/big.so", Type: "chunk", Offset: 270, ChunkOffset: 200, ChunkDigest: testDigest(4)},
		{Name: "empty", Type: "reg", Size: 0},
		{Name: "link", Type: "symlink", LinkName: "etc/passwd"},
		reg(".no.prefetch.landmark", 1, 300, 5), // hidden: no chunks
		reg("a", 20, 310, 6),
	}, 400)

	// Every regular file's chunks, once, in TOC order.
	var want []chunks.Chunk
	for _, p := range []string{"etc/passwd", "usr/lib/big.so", "a"} {
		_, n := resolve(t, tr, p)
		want = append(want, tr.fileChunks(n)...)
	}
	got := tr.Chunks()
	if !slices.Equal(got, want) {
		t.Errorf("Chunks() = %+v\nwant %+v", got, want)
	}
	if len(got) != 1+3+1 {
		t.Errorf("%d chunks, want 5 (passwd once for its two names, big.so's three, a's)", len(got))
	}
	for _, c := range got {
		if c.Digest == testDigestD(5) {
			t.Error("the hidden landmark's chunk is listed")
		}
	}
	// Appending to the result must not write into the tree's spare room.
	if cap(got) != len(got) {
		t.Errorf("Chunks() has capacity %d for %d chunks: an append would write into the tree", cap(got), len(got))
	}

	l := chunks.NewLayout(got)
	if l.Len() != len(got) {
		t.Errorf("layout of the tree has %d chunks, want %d", l.Len(), len(got))
	}
}
