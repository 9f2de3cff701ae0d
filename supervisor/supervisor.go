// Package supervisor runs the lazyfsd workers that serve lazily loaded layers:
// it spawns them, records them in workers.db, mounts layers through them,
// watches them, hands a dead worker's FUSE connections to a successor
// (failover: running containers see a stall, never an error), and re-adopts
// the workers of an earlier run after a restart of the snapshotter.
//
// It owns every FUSE connection (DESIGN.md): it opens /dev/fuse, mounts, and
// keeps its copy of each fd for the mount's life, never reading it, while the
// worker serves a dup it received over its control socket.
//
// Every change to the worker of one id (spawn, mount, takeover, replacement)
// happens under that id's lock; workers of other ids go on meanwhile.
//
// It implements snapshot.RemoteLayers without importing package snapshot.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/layer"
	"github.com/lazyfs/lazyfs/layout"
)

// Mode says how layers are spread over workers.
type Mode string

const (
	// PerImage runs one worker per image (keyed by manifest digest).
	PerImage Mode = "per-image"
	// Shared runs one worker for all layers.
	Shared Mode = "shared"
)

// RecoverPolicy says what happens to the mounts of a worker that dies.
type RecoverPolicy string

const (
	// Failover hands the dead worker's connections to a successor:
	// running containers see a stall, never an error.
	Failover RecoverPolicy = "failover"
	// Remount closes the dead worker's connections (their readers get
	// errors at once) and mounts the layers again for new containers.
	Remount RecoverPolicy = "remount"
)

// Options configure a Supervisor; cmd/snapshotter fills them from the config.
type Options struct {
	Root         string        // snapshotter root: workers.db and the workers' tocs/ live here
	RunDir       string        // workers/<id>/{api,control}.sock live here
	LogDir       string        // daemons/<id>.log live here
	Binary       string        // lazyfsd
	Mode         Mode          // PerImage or Shared
	ReadyTimeout time.Duration // bound on a spawned worker's start
	// Worker is every worker's configuration, built by the snapshotter
	// from its config; its root and run dir must be Root and RunDir. New
	// writes it to <run_dir>/workers/config.json, where every worker it
	// starts reads it. In PerImage mode ExitWhenIdle is forced on: a
	// per-image worker has nothing to do once its image's last layer is
	// unmounted.
	Worker daemonapi.WorkerConfig

	// RecoverPolicy is Failover unless set.
	RecoverPolicy RecoverPolicy
	// A worker that dies within CrashLoopWindow of starting to serve
	// counts as a quick death; after CrashLoopCount quick deaths in a row
	// its mounts are marked failed and their connections closed. The
	// first successor after a death starts at once; from the second quick
	// death in a row on, the next one waits RestartBackoff, doubling up
	// to a few seconds.
	CrashLoopCount  int
	CrashLoopWindow time.Duration
	RestartBackoff  time.Duration
	// Every HealthInterval each worker's API is asked for its health; a
	// worker that does not answer within HungTimeout twice in a row is
	// hung: SIGQUIT (a goroutine dump in its log), then SIGKILL, then its
	// mounts fail over like a crash.
	HealthInterval time.Duration
	HungTimeout    time.Duration
	// FDStore, if set (under systemd), keeps a copy of every connection's
	// fd, so that a connection outlives the snapshotter and its worker
	// dying together.
	FDStore *failover.FDStore
	// StoredFDs are the fds the fd store handed this start, by name
	// (failover.TakeListenFDs). The supervisor takes them over.
	StoredFDs map[string][]int
	// ParseLegacyLabels reads the layer of a mount recorded in workers.db
	// by a snapshotter older than the typed layer (labels.ParseLayer); the
	// supervisor itself never parses labels.
	ParseLegacyLabels func(map[string]string) (layer.Layer, error)
	// Logs rotate each worker's log file; zero values are lumberjack's
	// defaults (100 MB, every backup kept, forever, uncompressed).
	Logs LogRotation
}

// LogRotation says how a worker's log file is rotated.
type LogRotation struct {
	MaxSizeMB  int  // rotate past this size
	MaxBackups int  // rotated files kept; 0 keeps all
	MaxAgeDays int  // rotated files older than this are removed; 0 keeps them
	Compress   bool // gzip rotated files
}

// Supervisor manages the workers. Its methods are safe for concurrent use.
type Supervisor struct {
	opts Options
	reg  *registry
	ctx  context.Context // cancelled by Close: owns watchers and log copiers
	stop context.CancelFunc
	// tctx owns takeovers; Close cancels it first, since a takeover holds
	// its id's lock, which stopping that worker needs.
	tctx  context.Context
	tstop context.CancelFunc
	wg    sync.WaitGroup
	// rctx owns the layers being mounted again in the background (Restore,
	// remountDead), rwg waits for them: Shutdown and Close end them before
	// they list the workers, so that no worker is spawned and no layer
	// mounted behind that list (issue 10's hang at stop).
	rctx  context.Context
	rstop context.CancelFunc
	rwg   sync.WaitGroup
	// exits waits for the handling of worker deaths in flight: a takeover
	// past its cancellation point installs a successor, which Shutdown
	// and Close must see when they list the workers (else the successor
	// would outlive a drain and its unused layers stay mounted). Added to
	// only while closing is false, under mu.
	exits sync.WaitGroup

	idLocks idLocks

	mu      sync.Mutex
	workers map[string]*worker
	logs    map[string]*lumberjack.Logger // by worker id, kept across restarts
	quick   map[string]int                // quick deaths in a row, by worker id
	pending *pendingMounts
	closing bool
	metrics *metricsStore // workers' series, kept past their exit
	// standby is a started lazyfsd waiting for an identity: the next
	// successor (or new worker) skips exec and runtime start-up.
	standby     *process
	refilling   bool
	standbyDied time.Time     // when a standby last exited unused
	standbyUsed time.Time     // when a standby last became a worker
	history     workerHistory // mgmt API: restarts and last exit by worker id (status.go)
}

// New opens the worker registry and re-adopts every worker of an earlier run
// that is still alive: they keep serving their mounts untouched, and hand
// this supervisor copies of their connections. A dead worker whose
// connections the fd store kept is taken over in the background.
func New(ctx context.Context, opts Options) (*Supervisor, error) {
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 10 * time.Second
	}
	if opts.Mode == "" {
		opts.Mode = PerImage
	}
	if opts.RecoverPolicy == "" {
		opts.RecoverPolicy = Failover
	}
	if opts.CrashLoopCount <= 0 {
		opts.CrashLoopCount = 5
	}
	if opts.CrashLoopWindow <= 0 {
		opts.CrashLoopWindow = 10 * time.Second
	}
	if opts.RestartBackoff <= 0 {
		opts.RestartBackoff = 100 * time.Millisecond
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = 10 * time.Second
	}
	if opts.HungTimeout <= 0 {
		opts.HungTimeout = 10 * time.Second
	}
	for _, dir := range []string{opts.Root, layout.RunDir(opts.RunDir).Workers(), layout.LogDir(opts.LogDir).Daemons()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("failed to create %s: %w", dir, err)
		}
	}
	if opts.Mode == PerImage {
		opts.Worker.ExitWhenIdle = true
	}
	if err := checkWorkerConfig(opts); err != nil {
		return nil, err
	}
	if err := daemonapi.WriteWorkerConfig(layout.RunDir(opts.RunDir).WorkerConfig(), opts.Worker); err != nil {
		return nil, err
	}
	reg, err := openRegistry(layout.Root(opts.Root).WorkersDB())
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	tctx, tstop := context.WithCancel(sctx)
	rctx, rstop := context.WithCancel(sctx)
	s := &Supervisor{
		rctx:    rctx,
		rstop:   rstop,
		opts:    opts,
		reg:     reg,
		ctx:     sctx,
		stop:    stop,
		tctx:    tctx,
		tstop:   tstop,
		workers: map[string]*worker{},
		logs:    map[string]*lumberjack.Logger{},
		quick:   map[string]int{},
		pending: newPendingMounts(),
		metrics: newMetricsStore(),
	}
	if err := s.adoptAll(ctx); err != nil {
		stop()
		reg.close()
		return nil, err
	}
	s.refillStandby()
	return s, nil
}

// checkWorkerConfig refuses a worker config whose root or run dir is not
// the supervisor's: a worker would keep its TOCs, or bind its sockets,
// where the supervisor does not look.
func checkWorkerConfig(opts Options) error {
	if opts.Worker.Root != opts.Root || opts.Worker.RunDir != opts.RunDir {
		return fmt.Errorf("worker config: root %q and run_dir %q must be the snapshotter's %q and %q: %w",
			opts.Worker.Root, opts.Worker.RunDir, opts.Root, opts.RunDir, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Close stops the supervisor. Unless keepWorkers is set it unmounts every
// layer and stops every worker; with keepWorkers the workers and their mounts
// stay up for the next snapshotter (a live upgrade) and only the connections
// to them are closed.
func (s *Supervisor) Close(ctx context.Context, keepWorkers bool) error {
	workers := s.beginClose()
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
	// errors.Join drops a nil.
	errs = append(errs, s.reg.close())
	return errors.Join(errs...)
}

// beginClose marks the supervisor closing, ends what could still spawn a
// worker or mount a layer (takeovers, the standby, layers being mounted
// again) and returns the workers to stop or keep. Restores are waited for
// before the list is taken: a worker one of them spawned is in it.
func (s *Supervisor) beginClose() []*worker {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	// Takeovers in flight end first: they hold the locks of their ids.
	s.tstop()
	s.stopStandby()
	// Every step of a mount honours rctx, and workerFor refuses to spawn
	// once closing is set, so this wait is short.
	s.rstop()
	s.rwg.Wait()
	// After tstop and rstop, whose cancellation bounds this wait.
	s.exits.Wait()

	s.mu.Lock()
	defer s.mu.Unlock()
	workers := make([]*worker, 0, len(s.workers))
	for _, w := range s.workers {
		workers = append(workers, w)
	}
	return workers
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

// current returns the worker registered under id, nil if there is none.
func (s *Supervisor) current(id string) *worker {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.workers[id]
}

// isClosing tells whether Close has begun.
func (s *Supervisor) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// idLocks serialises the changes to the worker of one id.
type idLocks struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// lock takes id's lock and returns its release.
func (l *idLocks) lock(id string) (unlock func()) {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*sync.Mutex{}
	}
	m, ok := l.locks[id]
	if !ok {
		m = &sync.Mutex{}
		l.locks[id] = m
	}
	l.mu.Unlock()
	m.Lock()
	return m.Unlock
}
