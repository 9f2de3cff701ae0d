package mgmtapi

import "time"

// Paths of the endpoints.
const (
	PathStatus  = "/api/v1/status"
	PathWorkers = "/api/v1/workers/"
	PathMounts  = "/api/v1/mounts"
	// PathShutdown stops the snapshotter (POST; ?unmount_all=true drains).
	PathShutdown = "/api/v1/shutdown"

	pathWorkerList = "/api/v1/workers"
)

// Shutdown is the answer to a shutdown request: the stop has begun.
type Shutdown struct {
	// UnmountAll: every layer is detached, also those containers use (a
	// drain); otherwise their workers keep serving for the next start.
	UnmountAll bool `json:"unmount_all"`
	// PID is the snapshotter's: it is stopped when that process is gone
	// (its API goes away first).
	PID int `json:"pid"`
}

// Worker is one lazyfsd worker.
type Worker struct {
	ID        string    `json:"id"`
	PID       int       `json:"pid"`
	Mode      string    `json:"mode"`  // per-image or shared
	State     string    `json:"state"` // serving, ready, stopping, exited
	StartTime time.Time `json:"start_time,omitzero"`
	// Restarts counts the successors that took this worker id over
	// (failovers and planned restarts) since the snapshotter started.
	Restarts int    `json:"restarts"`
	LastExit *Exit  `json:"last_exit,omitempty"`
	RSSBytes int64  `json:"rss_bytes"`
	LogFile  string `json:"log_file"`
	// FUSENotifyResend tells whether the kernel offered FUSE_NOTIFY_RESEND
	// on every mount of the worker: without it a failover may leave reads
	// in flight unanswered (docs/failover.md).
	FUSENotifyResend bool    `json:"fuse_notify_resend"`
	Mounts           []Mount `json:"mounts"`
}

// Exit is how a process of a worker id ended.
type Exit struct {
	PID    int       `json:"pid"`
	Time   time.Time `json:"time"`
	Cause  string    `json:"cause"` // killed, signal, exit, unknown
	Detail string    `json:"detail"`
	// Expected: the snapshotter stopped it (shutdown, idle, or a planned
	// restart, which kills the old process); not a crash.
	Expected bool `json:"expected"`
}

// Mount is one lazily loaded layer's FUSE mount.
type Mount struct {
	ID               string `json:"id"`
	LayerDigest      string `json:"layer_digest"`
	ImageRef         string `json:"image_ref"`
	WorkerID         string `json:"worker_id"`
	State            string `json:"state"` // serving, unheld
	Mountpoint       string `json:"mountpoint"`
	FUSENotifyResend bool   `json:"fuse_notify_resend"`
	// FUSEProtocol is the protocol version the kernel offered in the
	// mount's INIT ("7.41").
	FUSEProtocol string `json:"fuse_protocol,omitempty"`
	// Verification says whether the blob was proven to have the DiffID
	// its chain ID implies: unverified, verified or forged (then DiffID
	// is the one it really has).
	Verification string `json:"verification"`
	DiffID       string `json:"diff_id,omitempty"`
}

// Status is the snapshotter's own state.
type Status struct {
	Version string `json:"version"`
	// Health is "ok", or "degraded" with the reasons in Problems.
	Health         string         `json:"health"`
	Problems       []string       `json:"problems,omitempty"`
	Mode           string         `json:"mode"`
	Workers        int            `json:"workers"`
	WorkersByState map[string]int `json:"workers_by_state"`
	Mounts         int            `json:"mounts"`
	Kernel         Kernel         `json:"kernel"`
	// Incidents are the lazily mounted layers found forged (issue 14),
	// also those whose snapshot was since removed, and those of earlier
	// runs (the newest 100). Any makes Health "degraded".
	Incidents []Incident `json:"incidents,omitempty"`
}

// Incident is a layer whose blob does not have the DiffID its image's
// config claims: quarantined (its mount answers EIO), its snapshot removed
// once unused.
type Incident struct {
	Time           time.Time `json:"time"`
	ImageRef       string    `json:"image_ref"`
	LayerDigest    string    `json:"layer_digest"`
	ChainID        string    `json:"chain_id"`
	ClaimedDiffID  string    `json:"claimed_diff_id"`
	ComputedDiffID string    `json:"computed_diff_id"`
}

// Kernel holds the kernel facts failover depends on.
type Kernel struct {
	Release string `json:"release"`
	// FUSENotifyResend is what the release promises (Linux 6.9 and
	// later); the mounts' own INIT flags are the authority once a layer
	// is mounted: MountsWithoutResend counts those that lack it.
	FUSENotifyResend    bool `json:"fuse_notify_resend"`
	MountsWithoutResend int  `json:"mounts_without_resend"`
	// FUSEProtocols are the FUSE protocol versions the kernel offered in
	// the mounts' INIT (one, unless the kernel changed under a mount
	// kept across a snapshotter restart).
	FUSEProtocols []string `json:"fuse_protocols,omitempty"`
	Error         string   `json:"error,omitempty"`
}

// Restart is the answer to a restart: the worker was replaced.
type Restart struct {
	ID       string        `json:"id"`
	OldPID   int           `json:"old_pid"`
	NewPID   int           `json:"new_pid"`
	Duration time.Duration `json:"duration_ns"`
}

// LogOptions select what Logs returns.
type LogOptions struct {
	// Tail is the number of last lines to return; negative: the whole log.
	Tail int
	// Follow keeps streaming what is appended, across rotations, until
	// the request's ctx ends.
	Follow bool
}
