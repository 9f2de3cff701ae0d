// Command stargz serves stargz-snapshotter, used as a library at the
// version pinned in go.mod, as a containerd proxy snapshotter: `make
// bench-e2e` measures lazyfs side by side with it on the same image,
// registry, proxy and containerd (tests/bench -stargz). It is a module of its
// own so that lazyfs's module does not depend on stargz-snapshotter; the
// project never ships it.
//
// It runs stargz with its defaults (no config file: prefetch and background
// fetch on, as a node that installs it gets), resolves registries as stargz
// does (plain HTTP for localhost), and on SIGINT or SIGTERM stops serving,
// closes the snapshotter and leaves the unmounting of what stays mounted to
// its caller (the bench unmounts everything under its root).
//
// Usage: stargz --address SOCKET --root DIR
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/contrib/snapshotservice"
	"github.com/containerd/log"
	"github.com/containerd/stargz-snapshotter/service"
	"google.golang.org/grpc"
)

func main() {
	address := flag.String("address", "", "unix socket to serve containerd's snapshots API on")
	root := flag.String("root", "", "stargz's root directory")
	logLevel := flag.String("log-level", "info", "log level")
	flag.Parse()
	if *address == "" || *root == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: stargz --address SOCKET --root DIR [--log-level LEVEL]")
		os.Exit(2)
	}
	if err := log.SetLevel(*logLevel); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := run(*address, *root); err != nil {
		fmt.Fprintf(os.Stderr, "stargz: %v\n", err)
		os.Exit(1)
	}
}

func run(address, root string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	sn, err := service.NewStargzSnapshotterService(ctx, root, &service.Config{})
	if err != nil {
		return fmt.Errorf("failed to start stargz-snapshotter: %w", err)
	}
	defer sn.Close()
	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))
	_ = os.Remove(address)
	l, err := net.Listen("unix", address)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	log.G(ctx).WithField("address", address).Info("serving stargz-snapshotter")
	select {
	case <-ctx.Done():
		srv.Stop()
		return nil
	case err := <-errc:
		return err
	}
}
