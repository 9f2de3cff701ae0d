// Command lazyfsd is a lazyfs worker: it serves the FUSE connections of the
// layers the snapshotter attaches to it, fetching file contents from the
// registry on demand. The snapshotter spawns it; it is not meant to be run by
// hand. main only wires flags to package worker and the daemonapi servers.
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

	"github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/lazyfs/lazyfs/cache"
	"github.com/lazyfs/lazyfs/chunks"
	"github.com/lazyfs/lazyfs/daemonapi"
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
	limits := toc.DefaultLimits()
	var (
		id          = flag.String("id", "", "worker id (required)")
		apiSocket   = flag.String("api-socket", "", "unix socket of the HTTP API (required)")
		ctlSocket   = flag.String("control-socket", "", "unix SOCK_SEQPACKET socket of the control channel (required)")
		root        = flag.String("root", "/var/lib/lazyfs", "snapshotter root; TOCs are kept in <root>/tocs")
		logLevel    = flag.String("log-level", "info", "trace, debug, info, warn or error")
		exitIdle    = flag.Bool("exit-when-idle", false, "exit once no mount is left (after --idle-timeout)")
		idleTimeout = flag.Duration("idle-timeout", 0, "with --exit-when-idle: how long to stay without a mount before exiting (0: on the last detach)")
		hostsDir    = flag.String("hosts-dir", "/etc/containerd/certs.d", "hosts.toml directory (containerd's layout)")
		dockerCfg   = flag.String("docker-config", "", "docker config.json with registry credentials (default: $DOCKER_CONFIG/config.json, ~/.docker/config.json)")
		readTimeout = flag.Duration("read-timeout", remote.DefaultReadTimeout, "deadline of one registry read, retries included (capped below the kernel's FUSE request timeout)")
		fuseReaders = flag.Int("fuse-readers", 4, "goroutines reading each FUSE connection (at least 2)")
		memCache    = flag.Int64("memory-cache-size", chunks.DefaultMemoryCacheSize, "bytes of decompressed chunks cached in memory")
		cacheDir    = flag.String("cache-dir", "", "on-disk chunk cache shared with the node's other workers; empty for none")
		readyFD     = flag.Int("ready-fd", -1, "fd to write one byte to, then close, once both sockets are bound (set by the snapshotter)")
		standbyFD   = flag.Int("standby-fd", -1, "start as the snapshotter's standby: read the worker's identity (id and sockets, one JSON line) from this fd before serving")
		showVersion = flag.Bool("version", false, "print the version and exit")
	)
	flag.Int64Var(&limits.MaxCompressedSize, "max-toc-compressed-size", limits.MaxCompressedSize, "largest compressed TOC accepted, in bytes")
	flag.Int64Var(&limits.MaxSize, "max-toc-size", limits.MaxSize, "largest uncompressed TOC accepted, in bytes")
	flag.IntVar(&limits.MaxEntries, "max-entries", limits.MaxEntries, "most TOC entries accepted")
	flag.Parse()
	if *showVersion {
		fmt.Println("lazyfsd", version)
		return nil
	}
	// The snapshotter reads our stderr through a pipe; a snapshotter that
	// died must not take us down with SIGPIPE on the next log line.
	signal.Ignore(syscall.SIGPIPE)
	if *standbyFD >= 0 {
		// Start-up (exec, the runtime, every package's init) is done;
		// what is left is quick once the identity comes.
		f := os.NewFile(uintptr(*standbyFD), "identity")
		ident, err := daemonapi.ReadIdentity(f)
		f.Close()
		if errors.Is(err, io.EOF) {
			return nil // the snapshotter needs this standby no more
		}
		if err != nil {
			return err
		}
		*id, *apiSocket, *ctlSocket = ident.ID, ident.APISocket, ident.ControlSocket
	}
	if *id == "" || *apiSocket == "" || *ctlSocket == "" {
		return errors.New("--id, --api-socket and --control-socket are required")
	}
	if err := log.SetFormat(log.TextFormat); err != nil {
		return err
	}
	if err := log.SetLevel(*logLevel); err != nil {
		return err
	}
	ctx := log.WithLogger(context.Background(), log.L.WithField("worker_id", *id).WithField("pid", os.Getpid()))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	chunkOpts := chunks.Options{MemoryCacheSize: *memCache}
	var disk *cache.Store
	if *cacheDir != "" {
		var err error
		if disk, err = cache.Open(ctx, *cacheDir, cache.Options{}); err != nil {
			return err
		}
		// Closed after the worker: what its last reads fetched is written.
		defer disk.Close()
		chunkOpts.Disk = disk
	}
	w, err := worker.New(ctx, worker.Options{
		ID:           *id,
		Version:      version,
		Root:         *root,
		Resolver:     remote.NewResolver(resolverOptions(ctx, *hostsDir, *dockerCfg, *readTimeout)),
		Limits:       limits,
		Chunks:       chunkOpts,
		Cache:        disk,
		FuseReaders:  *fuseReaders,
		ExitWhenIdle: *exitIdle,
		IdleTimeout:  *idleTimeout,
	})
	if err != nil {
		return err
	}
	ctl, err := daemonapi.ListenControl(ctx, *ctlSocket)
	if err != nil {
		return err
	}
	apiListener, err := daemonapi.ListenAPI(ctx, *apiSocket)
	if err != nil {
		ctl.Close()
		return err
	}
	api := daemonapi.NewServer(w, promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{}), daemonapi.WithWorkerID(*id))
	if *readyFD >= 0 {
		// The snapshotter waits on this instead of polling our sockets:
		// a successor taking over a dead worker's mounts starts serving
		// sooner.
		ready := os.NewFile(uintptr(*readyFD), "ready")
		ready.Write([]byte{1})
		ready.Close()
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	g, gctx := errgroup.WithContext(ctx)
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
