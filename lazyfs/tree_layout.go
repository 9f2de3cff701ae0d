package lazyfs

import "github.com/lazyfs/lazyfs/chunks"

// Chunks returns the chunks of every regular file of the layer, file after
// file in TOC order (blob order, for a validated TOC), each file once
// however many hard links name it:
// what chunks.NewLayout takes to read ahead over neighbouring files. Hidden
// files (eStargz landmarks, aufs bookkeeping) have none here.
//
// The slice is the tree's own, so that a large layer does not pay for a
// copy: callers must not modify it (appending is safe).
func (t *Tree) Chunks() []chunks.Chunk {
	return t.chunks[:len(t.chunks):len(t.chunks)]
}
