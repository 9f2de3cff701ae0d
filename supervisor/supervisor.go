// Package supervisor runs the lazyfsd workers that serve lazily loaded layers:
// it spawns them, records them in workers.db, mounts layers through them,
// watches them, mounts a dead worker's layers again through a new one, and
// re-adopts the workers of an earlier run after a restart of the snapshotter.
//
// It owns every FUSE connection (DESIGN.md): it opens /dev/fuse, mounts, and
// keeps its copy of each fd for the mount's life, never reading it, while the
// worker serves a dup it received over its control socket.
//
// It implements snapshot.RemoteLayers without importing package snapshot.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/log"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// Mode says how layers are spread over workers.
type Mode string

const (
	// PerImage runs one worker per image (keyed by manifest digest).
	PerImage Mode = "per-image"
	// Shared runs one worker for all layers.
	Shared Mode = "shared"
)

// Options configure a Supervisor; cmd/snapshotter fills them from the config.
type Options struct {
	Root         string        // snapshotter root: workers.db and the workers' tocs/ live here
	RunDir       string        // workers/<id>/{api,control}.sock live here
	LogDir       string        // daemons/<id>.log live here
	Binary       string        // lazyfsd
	Mode         Mode          // PerImage or Shared
	ReadyTimeout time.Duration // bound on a spawned worker's start
	LogLevel     string        // passed to workers
	// WorkerArgs are passed to every worker as they are (limits, registry
	// configuration, FUSE readers).
	WorkerArgs []string
}

// Supervisor manages the workers. Its methods are safe for concurrent use.
type Supervisor struct {
	opts Options
	reg  *registry
	ctx  context.Context // cancelled by Close: owns watchers and log copiers
	stop context.CancelFunc
	wg   sync.WaitGroup

	spawnMu sync.Mutex // serializes finding or spawning a worker

	mu      sync.Mutex
	workers map[string]*worker
	logs    map[string]*lumberjack.Logger // by worker id, kept across restarts
	pending *pendingMounts
	closing bool
	metrics *metricsStore // workers' series, kept past their exit
}

// New opens the worker registry and re-adopts every worker of an earlier run
// that is still alive: they keep serving their mounts untouched.
func New(ctx context.Context, opts Options) (*Supervisor, error) {
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 10 * time.Second
	}
	if opts.Mode == "" {
		opts.Mode = PerImage
	}
	for _, dir := range []string{opts.Root, filepath.Join(opts.RunDir, "workers"), filepath.Join(opts.LogDir, "daemons")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("failed to create %s: %w", dir, err)
		}
	}
	reg, err := openRegistry(filepath.Join(opts.Root, "workers.db"))
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s := &Supervisor{
		opts:    opts,
		reg:     reg,
		ctx:     sctx,
		stop:    stop,
		workers: map[string]*worker{},
		logs:    map[string]*lumberjack.Logger{},
		pending: newPendingMounts(),
		metrics: newMetricsStore(),
	}
	if err := s.adoptAll(ctx); err != nil {
		stop()
		reg.close()
		return nil, err
	}
	return s, nil
}

// Close stops the supervisor. Unless keepWorkers is set it unmounts every
// layer and stops every worker; with keepWorkers the workers and their mounts
// stay up for the next snapshotter (a live upgrade) and only the connections
// to them are closed.
func (s *Supervisor) Close(ctx context.Context, keepWorkers bool) error {
	s.mu.Lock()
	s.closing = true
	workers := make([]*worker, 0, len(s.workers))
	for _, w := range s.workers {
		workers = append(workers, w)
	}
	s.mu.Unlock()

	var errs []error
	for _, w := range workers {
		if keepWorkers {
			w.closeClients()
			continue
		}
		if err := s.stopWorker(ctx, w); err != nil {
			errs = append(errs, err)
		}
	}
	s.stop()
	s.wg.Wait()
	if err := s.reg.close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Workers lists the running workers.
func (s *Supervisor) Workers() []daemonapi.DaemonInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []daemonapi.DaemonInfo
	for _, w := range s.workers {
		out = append(out, daemonapi.DaemonInfo{ID: w.id, PID: w.pid})
	}
	return out
}

func (s *Supervisor) logger(ctx context.Context, id string) context.Context {
	return log.WithLogger(ctx, log.G(ctx).WithField("worker_id", id))
}
