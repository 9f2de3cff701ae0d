package daemonapi

import (
	"context"
	"time"
)

// Paths of the worker's HTTP API.
const (
	PathDaemon   = "/api/v1/daemon"
	PathShutdown = "/api/v1/daemon/shutdown"
	PathLayers   = "/api/v1/layers"
	PathMounts   = "/api/v1/mounts/" // followed by the mount id
	PathHealth   = "/healthz"
	PathMetrics  = "/metrics"
)

// DaemonState is where a worker is in its life.
type DaemonState string

// Worker states.
const (
	DaemonStarting DaemonState = "starting"
	DaemonRunning  DaemonState = "running"
	DaemonStopping DaemonState = "stopping"
)

// MountState is where one of a worker's mounts is in its life.
type MountState string

// Mount states.
const (
	// MountLoaded: the layer's TOC is loaded, no FUSE connection yet.
	MountLoaded MountState = "loaded"
	// MountServing: a FUSE connection is attached and answered INIT.
	MountServing MountState = "serving"
	// MountFailed: the connection ended with an error; see the logs.
	MountFailed MountState = "failed"
)

// DaemonInfo describes a worker (GET /api/v1/daemon).
type DaemonInfo struct {
	ID        string      `json:"id"`
	PID       int         `json:"pid"`
	Version   string      `json:"version"`
	State     DaemonState `json:"state"`
	StartTime time.Time   `json:"start_time"`
	Mounts    []MountInfo `json:"mounts"`
}

// MountInfo describes one mount a worker holds.
type MountInfo struct {
	ID          string     `json:"id"`
	LayerDigest string     `json:"layer_digest"`
	ImageRef    string     `json:"image_ref"`
	TOCDigest   string     `json:"toc_digest"`
	Mountpoint  string     `json:"mountpoint"`
	State       MountState `json:"state"`
	// Verification says whether the blob served was proven to have the
	// DiffID its chain ID implies; DiffID is the one it really has, once
	// known.
	Verification Verification `json:"verification,omitempty"`
	DiffID       string       `json:"diff_id,omitempty"`
}

// LoadLayerRequest asks a worker to load a layer's table of contents for a
// mount (POST /api/v1/layers). Every field is required: MountID as
// ValidateMountID says, LayerDigest and TOCDigest valid digests, ImageRef the
// reference the layer is fetched through, Mountpoint an absolute clean path.
type LoadLayerRequest struct {
	MountID     string `json:"mount_id"`
	ImageRef    string `json:"image_ref"`
	LayerDigest string `json:"layer_digest"`
	TOCDigest   string `json:"toc_digest"`
	Mountpoint  string `json:"mountpoint"`
	// NextLayers are optional: the digests of the image's layers after
	// this one (containerd's cri.image-layers label), which the worker
	// resolves ahead while it loads this one, so that their own loads make
	// no request. At most MaxNextLayers.
	NextLayers []string `json:"next_layers,omitempty"`
}

// MaxNextLayers bounds LoadLayerRequest.NextLayers (containerd's label
// holds about 50 digests in its 4 KiB).
const MaxNextLayers = 128

// LayerInfo describes a loaded layer: the size of its blob and the number
// of entries in its verified table of contents.
type LayerInfo struct {
	MountID     string `json:"mount_id"`
	LayerDigest string `json:"layer_digest"`
	TOCDigest   string `json:"toc_digest"`
	BlobSize    int64  `json:"blob_size"`
	Entries     int    `json:"entries"`
}

// Backend is what the HTTP API asks of a worker. Requests reach it
// validated. Errors should carry an errdefs class: it picks the HTTP status
// and is restored on the client.
type Backend interface {
	// Info describes the worker and its mounts.
	Info(ctx context.Context) (DaemonInfo, error)
	// LoadLayer fetches, bounds, verifies and stores the layer's TOC. A
	// layer refused for lazy loading is an errdefs.ErrInvalidArgument
	// whose message says why.
	LoadLayer(ctx context.Context, req LoadLayerRequest) (LayerInfo, error)
	// Detach stops serving the mount (errdefs.ErrNotFound if unknown).
	Detach(ctx context.Context, mountID string) error
	// Shutdown starts a clean exit and returns without waiting for it:
	// the reply to this request is still to be sent.
	Shutdown(ctx context.Context) error
}
