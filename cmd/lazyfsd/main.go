// Command lazyfsd is a lazyfs worker: it serves the FUSE connections of the
// layers the snapshotter attaches to it, fetching file contents from the
// registry on demand. The snapshotter spawns it; it is not meant to be run by
// hand. main only wires its config file (daemonapi.WorkerConfig) to package
// worker and the daemonapi servers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/lazyfs/lazyfs/cache"
	"github.com/lazyfs/lazyfs/chunks"
	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/layout"
	"github.com/lazyfs/lazyfs/metrics"
	"github.com/lazyfs/lazyfs/remote"
	"github.com/lazyfs/lazyfs/toc"
	"github.com/lazyfs/lazyfs/worker"
)

var version = "dev"

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "lazyfsd: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	// Only what the spawn protocol needs is a flag; every setting is in the
	// config file (daemonapi.WorkerConfig), so that the snapshotter builds
	// a worker's configuration in one place.
	var (
		configPath  = flag.String("config", "", "the worker config file the snapshotter wrote (<run_dir>/workers/config.json; required)")
		id          = flag.String("id", "", "worker id; its sockets are <run_dir>/workers/<id>/{api,control}.sock (required unless --standby-fd)")
		readyFD     = flag.Int("ready-fd", -1, "fd to write one byte to, then close, once both sockets are bound (set by the snapshotter)")
		standbyFD   = flag.Int("standby-fd", -1, "start as the snapshotter's standby: read the worker's identity (id and sockets, one JSON line) from this fd before serving")
		showVersion = flag.Bool("version", false, "print the version and exit")
	)
	flag.Parse()
	if *showVersion {
		fmt.Println("lazyfsd", version)
		return nil
	}
	// The snapshotter reads our stderr through a pipe; a snapshotter that
	// died must not take us down with SIGPIPE on the next log line.
	signal.Ignore(syscall.SIGPIPE)
	if *configPath == "" {
		return errors.New("--config is required")
	}
	// Read before waiting as a standby: a config this binary cannot read
	// shows at once in the standby's log, not at the next takeover.
	cfg, err := daemonapi.ReadWorkerConfig(*configPath)
	if err != nil {
		return err
	}
	run := layout.RunDir(cfg.RunDir)
	ident := daemonapi.Identity{ID: *id, APISocket: run.WorkerAPISocket(*id), ControlSocket: run.WorkerControlSocket(*id)}
	if *standbyFD >= 0 {
		// Start-up (exec, the runtime, every package's init) is done;
		// what is left is quick once the identity comes.
		f := os.NewFile(uintptr(*standbyFD), "identity")
		ident, err = daemonapi.ReadIdentity(f)
		f.Close()
		if errors.Is(err, io.EOF) {
			return nil // the snapshotter needs this standby no more
		}
		if err != nil {
			return err
		}
	} else if *id == "" {
		return errors.New("--id is required unless --standby-fd is given")
	}
	return serve(cfg, ident, *readyFD)
}

// serve runs the worker ident with configuration cfg until it is told to
// stop.
func serve(cfg daemonapi.WorkerConfig, ident daemonapi.Identity, readyFD int) error {
	if err := log.SetFormat(log.TextFormat); err != nil {
		return err
	}
	if err := log.SetLevel(cfg.LogLevel); err != nil {
		return err
	}
	ctx := log.WithLogger(context.Background(), log.L.WithField("worker_id", ident.ID).WithField("pid", os.Getpid()))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// One memory budget and one request scheduler for every layer of the
	// worker.
	chunkOpts := chunks.Options{
		MemoryCacheSize: cfg.MemoryCacheSize,
		Memory:          chunks.NewMemory(cfg.MemoryCacheSize),
		Scheduler: chunks.NewScheduler(chunks.SchedulerOptions{
			Concurrency:           cfg.Fetch.Concurrency,
			BackgroundConcurrency: cfg.Fetch.BackgroundConcurrency,
			BackgroundRate:        cfg.Fetch.BackgroundRate,
		}),
	}
	var disk *cache.Store
	if cfg.CacheDir != "" {
		var err error
		if disk, err = cache.Open(ctx, cfg.CacheDir, cache.Options{}); err != nil {
			return err
		}
		// Closed after the worker: what its last reads fetched is written.
		defer disk.Close()
		chunkOpts.Disk = disk
	}
	w, err := worker.New(ctx, worker.Options{
		ID:       ident.ID,
		Version:  version,
		Root:     cfg.Root,
		Resolver: remote.NewResolver(resolverOptions(ctx, cfg)),
		Limits: toc.Limits{
			MaxCompressedSize: cfg.TOC.MaxCompressedSize,
			MaxSize:           cfg.TOC.MaxSize,
			MaxEntries:        cfg.TOC.MaxEntries,
		},
		Chunks:       chunkOpts,
		Prefetch:     cfg.Fetch.Prefetch,
		Cache:        disk,
		FuseReaders:  cfg.FuseReaders,
		ExitWhenIdle: cfg.ExitWhenIdle,
		IdleTimeout:  time.Duration(cfg.IdleTimeout),
		// A layer's proof streams its whole blob: background work, paced
		// like the rest of it ([fetch] background_rate).
		ProofRate: cfg.Fetch.BackgroundRate,
	})
	if err != nil {
		return err
	}
	ctl, err := daemonapi.ListenControl(ctx, ident.ControlSocket)
	if err != nil {
		return err
	}
	apiListener, err := daemonapi.ListenAPI(ctx, ident.APISocket)
	if err != nil {
		ctl.Close()
		return err
	}
	api := daemonapi.NewServer(w, promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{}), daemonapi.WithWorkerID(ident.ID))
	if readyFD >= 0 {
		// The snapshotter waits on this instead of polling our sockets:
		// a successor taking over a dead worker's mounts starts serving
		// sooner.
		ready := os.NewFile(uintptr(readyFD), "ready")
		ready.Write([]byte{1})
		ready.Close()
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		worker.RunMemoryUpkeep(gctx, chunkOpts.Memory.Budget())
		return nil
	})
	g.Go(func() error { return daemonapi.ServeControl(gctx, ctl, w) })
	g.Go(func() error { return daemonapi.Serve(gctx, apiListener, api) })
	g.Go(func() error {
		select {
		case sig := <-signals:
			log.G(ctx).WithField("signal", sig.String()).Info("exiting on signal")
		case <-w.Done():
		case <-gctx.Done():
			return nil
		}
		cancel()
		return nil
	})
	log.G(ctx).WithField("version", version).Info("worker serving")
	err = g.Wait()
	w.Close()
	log.G(ctx).Info("worker stopped")
	return err
}
