package chunks

import (
	"container/list"

	"github.com/opencontainers/go-digest"
)

// lru keeps verified, decompressed chunks by digest (equal digests are
// equal bytes, whichever layer or file they came from), bounded by the sum
// of their sizes. It is not safe for concurrent use.
type lru struct {
	max  int64
	size int64
	// evicted counts the chunks evicted so far.
	evicted int64
	order   *list.List // of *lruEntry, most recently used first
	byKey   map[digest.Digest]*list.Element
}

type lruEntry struct {
	key  digest.Digest
	data []byte
}

func newLRU(max int64) *lru {
	return &lru{max: max, order: list.New(), byKey: make(map[digest.Digest]*list.Element)}
}

// get returns the chunk stored under d, marking it recently used. The
// returned slice must not be modified.
func (c *lru) get(d digest.Digest) ([]byte, bool) {
	e, ok := c.byKey[d]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*lruEntry).data, true
}

// holds reports whether a chunk of size bytes is stored under d, without
// marking it used: looking is not using.
func (c *lru) holds(d digest.Digest, size int64) bool {
	e, ok := c.byKey[d]
	return ok && int64(len(e.Value.(*lruEntry).data)) == size
}

// add stores data under d and evicts least recently used chunks until the
// bound holds again. A chunk larger than the whole bound is not stored.
func (c *lru) add(d digest.Digest, data []byte) {
	if int64(len(data)) > c.max {
		return
	}
	if e, ok := c.byKey[d]; ok {
		c.order.MoveToFront(e)
		return
	}
	c.byKey[d] = c.order.PushFront(&lruEntry{key: d, data: data})
	c.size += int64(len(data))
	for c.size > c.max {
		e := c.order.Back()
		ent := e.Value.(*lruEntry)
		c.order.Remove(e)
		delete(c.byKey, ent.key)
		c.size -= int64(len(ent.data))
		c.evicted++
	}
}
