package metrics

import "github.com/prometheus/client_golang/prometheus"

// Worker side: the read path's memory tier, the fetch scheduler and the
// prefetcher (package chunks).
var (
	MemoryCacheHits = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "memory_cache_hits_total",
		Help: "Chunk lookups served by the worker's memory tier.",
	})
	MemoryCacheMisses = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "memory_cache_misses_total",
		Help: "Chunk lookups the worker's memory tier did not hold: looked up on disk, then fetched.",
	})
	MemoryCacheBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "memory_cache_bytes",
		Help: "Decompressed chunk bytes held by the worker's memory tier: one budget ([layers] memory_cache_size) for every layer the worker serves.",
	})
	MemoryCacheEvictions = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "memory_cache_evictions_total",
		Help: "Chunks evicted from the worker's memory tier to keep its budget.",
	})

	FetchQueueLength = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "fetch_queue_length",
		Help: "Range requests waiting for a registry slot, by class (foreground: a read a container waits on; prefetch; background).",
	}, []string{"class"})
	FetchesInFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "fetches_in_flight",
		Help: "Range requests to registries in flight, by class.",
	}, []string{"class"})
	FetchWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "fetch_wait_seconds",
		Help:    "Time a range request waited for a registry slot before it was sent, by class. For foreground, this is the time a container's read spent behind other work.",
		Buckets: latencyBuckets,
	}, []string{"class"})

	BackgroundYield = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "background_yield_seconds_total",
		Help: "Time background streams (layer proofs, the background fetch) stood aside for reads a container waited on.",
	})

	PrefetchBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "prefetch_bytes",
		Help: "Decompressed bytes of a mounted layer's prioritized files (before its eStargz prefetch landmark) that its prefetch covers, by layer.",
	}, []string{"layer_digest"})
	PrefetchDoneBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "prefetch_done_bytes",
		Help: "Decompressed bytes of a layer's prioritized files cached so far by its prefetch (equal to prefetch_bytes once done), by layer.",
	}, []string{"layer_digest"})

	LayersResolvedAhead = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "layers_resolved_ahead_total",
		Help: "Layers of an image whose footer and TOC a worker fetched at the image's first lazy Prepare, before their own, by result: used (their load made no request), failed (their load fetches them itself), unused (dropped unclaimed after a while, or over the memory bound: skipped).",
	}, []string{"result"})
)

func init() {
	Registry.MustRegister(MemoryCacheHits, MemoryCacheMisses, MemoryCacheBytes, MemoryCacheEvictions,
		FetchQueueLength, FetchesInFlight, FetchWait, BackgroundYield, PrefetchBytes, PrefetchDoneBytes, LayersResolvedAhead)
}
