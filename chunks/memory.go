package chunks

import (
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/metrics"
)

// Memory is the worker-wide memory tier: verified, decompressed chunks by
// digest, least recently used evicted first, within one budget for every
// layer and mount the worker serves (a worker serving ten layers holds at
// most its budget, not ten times it). A chunk two layers share is kept
// once. It is safe for concurrent use; the Readers of a worker share one.
type Memory struct {
	mu    sync.Mutex
	cache *lru
}

// NewMemory returns a memory tier holding at most budget bytes of chunk
// data; zero or less keeps nothing.
func NewMemory(budget int64) *Memory {
	return &Memory{cache: newLRU(max(budget, 0))}
}

// Budget returns the most bytes of chunk data the tier holds.
func (m *Memory) Budget() int64 { return m.cache.max }

// Size returns the bytes of chunk data it holds now.
func (m *Memory) Size() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cache.size
}

// get returns the chunk d if held with size bytes, marking it used. The
// size check guards against a chunk list that lies about a chunk's size.
func (m *Memory) get(d digest.Digest, size int64) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data, ok := m.cache.get(d)
	if !ok || int64(len(data)) != size {
		metrics.MemoryCacheMisses.Inc()
		return nil, false
	}
	metrics.MemoryCacheHits.Inc()
	return data, true
}

// holds reports whether chunk d is held with size bytes, without marking
// it used: looking is not using.
func (m *Memory) holds(d digest.Digest, size int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cache.holds(d, size)
}

// add keeps data under d, evicting least recently used chunks of any layer
// until the budget holds.
func (m *Memory) add(d digest.Digest, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	before := m.cache.evicted
	m.cache.add(d, data)
	metrics.MemoryCacheEvictions.Add(float64(m.cache.evicted - before))
	metrics.MemoryCacheBytes.Set(float64(m.cache.size))
}
