package metrics

import "github.com/prometheus/client_golang/prometheus"

// Registry access (package remote), per registry host ("registry" label:
// the host a request went to, a mirror or the registry itself). Counted by
// the workers, and by the snapshotter only for what it fetches itself; the
// snapshotter's /metrics carries every worker's series under worker_id.
var (
	RegistryRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "registry_requests_total",
		Help: "HTTP requests sent to a registry host (hedges included), by outcome: ok, or the failure's cause.",
	}, []string{"registry", "outcome"})
	RegistryRetries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "registry_retries_total",
		Help: "Requests tried again after a transient failure, by cause (network, status_5xx, status_429, truncated, range, timeout, auth).",
	}, []string{"registry", "cause"})
	RegistryHedgesFired = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "registry_hedges_fired_total",
		Help: "Second (or third) requests sent because the first was slower than recently observed latency.",
	}, []string{"registry"})
	RegistryHedgesWon = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "registry_hedges_won_total",
		Help: "Hedged requests that answered before the request they raced.",
	}, []string{"registry"})
	RegistryCircuitState = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "registry_circuit_state",
		Help: "Circuit breaker of a registry host: 0 closed (requests flow), 1 open (failing fast, probing at a bounded rate).",
	}, []string{"registry"})
	RegistryCircuitOpens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "registry_circuit_opens_total",
		Help: "Times a registry host's circuit breaker opened (consecutive transient failures).",
	}, []string{"registry"})
	RegistryBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "registry_bytes_total",
		Help: "Blob body bytes received from a registry host in answers that were accepted.",
	}, []string{"registry"})
	RegistryLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "registry_latency_seconds",
		Help:    "Duration of successful blob requests to a registry host, body included.",
		Buckets: latencyBuckets,
	}, []string{"registry"})
	RegistryGiveUps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "registry_give_ups_total",
		Help: "Blob reads that failed after every retry their deadline allowed (each an error to a reader).",
	}, []string{"registry"})
)

func init() {
	Registry.MustRegister(RegistryRequests, RegistryRetries, RegistryHedgesFired, RegistryHedgesWon,
		RegistryCircuitState, RegistryCircuitOpens, RegistryBytes, RegistryLatency, RegistryGiveUps)
}
