// Package metrics holds every Prometheus series lazyfs exports, in one place so
// that names, labels and help texts stay consistent across the snapshotter and
// its workers. It is a leaf: it imports nothing of lazyfs.
//
// Each process serves Registry on /metrics; the snapshotter also re-exports its
// workers' series labelled with worker_id.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "lazyfs"

// Registry is the registry every lazyfs process serves on /metrics.
var Registry = prometheus.NewRegistry()

// Latency buckets from 100µs to ~50s: FUSE ops on a warm cache are sub-ms,
// a cold chunk over a slow registry takes seconds.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2.5, 15)

var (
	// Snapshotter side.

	MountDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "mount_duration_seconds",
		Help:    "Time to mount a layer lazily: TOC load in the worker, mount(2), attach and FUSE INIT.",
		Buckets: latencyBuckets,
	})
	Fallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "fallbacks_total",
		Help: "Layers that were not mounted lazily and fell back to an ordinary unpack, by reason.",
	}, []string{"reason"})

	LayerProofs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "layer_proofs_total",
		Help: "Proofs of a lazily mounted layer's identity (its whole blob's DiffID against its chain ID), by result: verified, forged, error (no proof could be made).",
	}, []string{"result"})
	ForgedLayers = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "forged_layers_total",
		Help: "Lazily mounted layers whose blob does not have the DiffID their image claims: each is an incident, logged at error level, and quarantined.",
	})

	// Worker side: table of contents.

	TOCFetchDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "toc_fetch_duration_seconds",
		Help:    "Time to fetch a layer's footer and compressed TOC from the registry.",
		Buckets: latencyBuckets,
	})
	TOCParseDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "toc_parse_duration_seconds",
		Help:    "Time to decompress, verify, decode and validate a layer's TOC.",
		Buckets: latencyBuckets,
	})

	// Worker side: FUSE.

	FuseOpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "fuse_op_duration_seconds",
		Help:    "Duration of FUSE operations answered by the worker, by operation.",
		Buckets: latencyBuckets,
	}, []string{"op"})
	FuseOpFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "fuse_op_failures_total",
		Help: "FUSE operations answered with an I/O error (not ENOENT and the like), by operation.",
	}, []string{"op"})
	UnavailableReads = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "unavailable_reads_total",
		Help: "FUSE READs answered with EIO because their data was in no cache and the registry could not provide it (unreachable, an error status, a short answer); included in fuse_op_failures_total. The outage is logged once per layer.",
	})
	ReadsServed = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "fuse_reads_total",
		Help: "FUSE READ requests answered successfully.",
	})
	BytesServed = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "fuse_read_bytes_total",
		Help: "Bytes returned by successful FUSE READ requests.",
	})

	// Worker side: chunks and registry.

	ChunkFetches = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "chunk_fetches_total",
		Help: "Chunks fetched from the registry (each verified before use).",
	})
	ChunkFetchBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "chunk_fetch_bytes_total",
		Help: "Compressed bytes of chunks fetched from the registry.",
	})
	VerificationFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "verification_failures_total",
		Help: "Chunks whose decompressed bytes did not match their TOC digest.",
	})
	ReadAheadBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "readahead_bytes_total",
		Help: "Compressed bytes fetched from the registry by read-ahead: streams of chunks no read asked for, fetched along with one that was (included in chunk_fetch_bytes_total).",
	})
	RegistryRequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "registry_request_duration_seconds",
		Help:    "Duration of HTTP requests to registries, by method.",
		Buckets: latencyBuckets,
	}, []string{"method"})
	RegistryRequestFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "registry_request_failures_total",
		Help: "Failed HTTP requests to registries, by reason (status class, network, short read).",
	}, []string{"reason"})
)

func init() {
	Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		MountDuration, Fallbacks, LayerProofs, ForgedLayers,
		TOCFetchDuration, TOCParseDuration,
		FuseOpDuration, FuseOpFailures, UnavailableReads, ReadsServed, BytesServed,
		ChunkFetches, ChunkFetchBytes, VerificationFailures, ReadAheadBytes,
		RegistryRequestDuration, RegistryRequestFailures,
	)
}
