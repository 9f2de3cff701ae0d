package metrics

import "github.com/prometheus/client_golang/prometheus"

// Failover: the snapshotter's side of taking a dead worker's connections
// over, and the worker's side of answering what the kernel resent.
var (
	Failovers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "failovers_total",
		Help: "Workers whose FUSE connections were taken over by a successor, by worker and cause (killed, signal, exit, planned, unknown).",
	}, []string{"worker_id", "cause"})
	FailoverDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "failover_duration_seconds",
		Help:    "Time from a worker's death (or a planned replacement's start) until its successor serves every connection.",
		Buckets: latencyBuckets,
	})
	TakeoversRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "takeovers_refused_total",
		Help: "Attempts to hand a connection to a successor that failed, by reason (spawn, load, attach, init_mismatch).",
	}, []string{"reason"})
	FailoversGivenUp = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "failovers_given_up_total",
		Help: "Workers in a crash loop whose mounts were marked failed and whose connections were closed (readers get errors), by worker.",
	}, []string{"worker_id"})
	TakeoversWithoutResend = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "takeovers_without_resend_total",
		Help: "Connections taken over on a kernel without FUSE_NOTIFY_RESEND (Linux < 6.9): requests in flight at the crash may hang until the kernel's request timeout.",
	})
	FuseRequestsResent = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "fuse_requests_resent_total",
		Help: "FUSE requests answered by this worker that the kernel resent after a previous server of the connection died holding them.",
	})
)

func init() {
	Registry.MustRegister(Failovers, FailoverDuration, TakeoversRefused, FailoversGivenUp, TakeoversWithoutResend, FuseRequestsResent)
}

// Worker lifecycle, on the snapshotter's side.
var (
	HungWorkers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "workers_hung_total",
		Help: "Workers that stopped answering their health checks and were killed (SIGQUIT, then SIGKILL), by worker.",
	}, []string{"worker_id"})
	WorkerStarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "worker_starts_total",
		Help: "Worker processes started, by reason (new, successor).",
	}, []string{"reason"})
	WorkerExits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "worker_exits_total",
		Help: "Worker processes that ended, by cause (expected, killed, signal, exit, hung, unknown).",
	}, []string{"cause"})
	WorkerReadyDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "worker_ready_duration_seconds",
		Help:    "Time from starting a worker process until both its sockets answer.",
		Buckets: latencyBuckets,
	})
)

func init() {
	Registry.MustRegister(HungWorkers, WorkerStarts, WorkerExits, WorkerReadyDuration)
}
