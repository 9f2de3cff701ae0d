package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/contrib/snapshotservice"
	"github.com/containerd/log"
	"github.com/coreos/go-systemd/v22/daemon"
	"google.golang.org/grpc"

	"github.com/lazyfs/lazyfs/config"
	"github.com/lazyfs/lazyfs/snapshot"
)

// grpcStopGrace bounds the wait for in-flight gRPC calls at shutdown.
const grpcStopGrace = 5 * time.Second

// serve runs the snapshotter until SIGINT or SIGTERM, then stops in order:
// stop accepting, let in-flight calls finish, close the store, unmount the
// layers no container uses and keep the workers of the others serving
// (shutdownSupervisor). A second signal exits at once.
func serve(ctx context.Context, cfg config.Config) error {
	// Before anything can connect: a signal that arrives once containerd
	// can reach us must take the clean path.
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)

	evictor, stopEvictor, err := startCacheEvictor(ctx, cfg)
	if err != nil {
		return err
	}
	defer stopEvictor()
	sup, err := newSupervisor(ctx, cfg)
	if err != nil {
		return err
	}
	// Runs after the gRPC server has stopped: no call can mount anything.
	drain := cfg.Shutdown.UnmountAll
	defer func() { shutdownSupervisor(ctx, sup, cfg, drain) }()
	opts := []snapshot.Opt{snapshot.WithRemoteLayers(sup), snapshot.WithProofWait(time.Duration(cfg.Layers.ProofWait))}
	if evictor != nil {
		opts = append(opts, snapshot.WithCachedLayers(evictor))
	}
	sn, err := snapshot.New(ctx, cfg.Root, opts...)
	if err != nil {
		return err
	}
	defer func() {
		if err := sn.Close(); err != nil {
			log.G(ctx).WithError(err).Error("failed to close the snapshot store")
		}
	}()
	if err := sn.Restore(ctx); err != nil {
		return err
	}
	stopTOCPruner, err := startTOCPruner(ctx, cfg, sn)
	if err != nil {
		return err
	}
	defer stopTOCPruner()

	l, err := listenUnix(cfg.Address)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))

	stopDebug, err := startDebugServer(ctx, cfg.Debug.Address, sup.WorkerMetrics())
	if err != nil {
		l.Close()
		return err
	}
	defer stopDebug()

	// mgmt API (snapshotterctl); closed before the supervisor (defers run in reverse).
	stops := make(chan bool, 1)
	mgmt, err := startMgmtServer(ctx, cfg.RunDir, sup, stops)
	if err != nil {
		l.Close()
		return err
	}
	defer mgmt.Close(ctx)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(l) }()

	notify(ctx, daemon.SdNotifyReady+"\nSTATUS="+statusLine(sup))
	stopWatch := watchSystemd(ctx, func() string { return statusLine(sup) })
	defer stopWatch()
	log.G(ctx).Info("serving containerd snapshots API")

	select {
	case err := <-serveErr:
		return fmt.Errorf("gRPC server stopped: %w", err)
	case sig := <-signals:
		log.G(ctx).WithField("signal", sig.String()).Info("shutting down; send the signal again to exit at once")
	case all := <-stops:
		drain = drain || all
		log.G(ctx).WithField("unmount_all", drain).Info("shutting down on request (snapshotterctl shutdown); a signal exits at once")
	}
	stopWatch()
	notify(ctx, daemon.SdNotifyStopping+"\nSTATUS=stopping: unmounting the layers no container uses")
	// mgmt API first: no restart may begin while the snapshotter stops.
	if err := mgmt.Close(ctx); err != nil {
		log.G(ctx).WithError(err).Warn("failed to stop the management api cleanly")
	}
	go func() {
		sig := <-signals
		log.G(ctx).WithField("signal", sig.String()).Warn("second signal: exiting without a clean shutdown")
		os.Exit(1)
	}()

	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	// A client holding a stream open must not keep the snapshotter up
	// forever: after a grace period in-flight calls are cut, so that the
	// whole stop fits in 10s.
	select {
	case <-stopped:
	case <-time.After(grpcStopGrace):
		log.G(ctx).WithField("grace", grpcStopGrace).Warn("in-flight calls did not finish; stopping them")
		srv.Stop()
	}
	log.G(ctx).Info("snapshotter stopped")
	return nil
}

// listenUnix listens on a unix socket readable only by root (and the socket's
// group), replacing a stale socket file left by a crash but refusing to steal
// the socket of a snapshotter that is still running.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, fmt.Errorf("failed to create socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use by a running process (another lazyfs-snapshotter?)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("failed to remove stale socket: %w", err)
		}
	}
	// Create the socket with no access for others from the first instant.
	old := syscall.Umask(0o117)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("failed to listen on %s: %w", path, err)
	}
	return l, nil
}
