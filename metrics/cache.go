package metrics

import "github.com/prometheus/client_golang/prometheus"

// On-disk chunk cache (package cache). Hits, misses, reads and writes are
// counted by the workers that use it; the size, evictions and stale
// temporary files by the snapshotter, the one process that evicts.
var (
	CacheHits = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "cache_hits_total",
		Help: "Chunks read back from the disk cache and verified (served without the registry).",
	})
	CacheMisses = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "cache_misses_total",
		Help: "Chunks looked up in the disk cache and not found there (or found corrupt): fetched from the registry instead.",
	})
	CacheReadBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "cache_read_bytes_total",
		Help: "Decompressed bytes of chunks served from the disk cache.",
	})
	CacheWrites = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "cache_writes_total",
		Help: "Verified chunks written to the disk cache.",
	})
	CacheWriteBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "cache_write_bytes_total",
		Help: "Decompressed bytes of chunks written to the disk cache.",
	})
	CacheWriteFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "cache_write_failures_total",
		Help: "Chunks not written to the disk cache, by reason: error (I/O, disk full), dropped (the write queue was full; the chunk is fetched again when next needed).",
	}, []string{"reason"})
	CacheWriteQueueBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "cache_write_queue_bytes",
		Help: "Bytes of verified chunks not yet in place in the disk cache: queued, or written but not yet synced and renamed (0 when the cache has caught up; what a worker that dies loses).",
	})
	CacheCorrupt = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "cache_corrupt_total",
		Help: "Cache files whose size or digest did not match their name when read back: each was deleted, never served, and the chunk fetched again.",
	})
	CacheSize = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "cache_size_bytes",
		Help: "Bytes held by the disk cache at the end of the snapshotter's last eviction pass.",
	})
	CacheEvictions = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "cache_evictions_total",
		Help: "Chunk files removed from the disk cache to keep it within its budget, least recently used first.",
	})
	CacheEvictedBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "cache_evicted_bytes_total",
		Help: "Bytes of the chunk files evicted from the disk cache.",
	})
)

func init() {
	Registry.MustRegister(CacheHits, CacheMisses, CacheReadBytes, CacheWrites, CacheWriteBytes, CacheWriteFailures,
		CacheWriteQueueBytes, CacheCorrupt, CacheSize, CacheEvictions, CacheEvictedBytes)
}
