package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lazyfs/lazyfs/metrics"
)

// startDebugServer serves pprof and /metrics on addr (host:port); an empty
// addr turns it off. /metrics carries the snapshotter's own series and
// those of its workers, labelled worker_id. The returned func stops it.
func startDebugServer(ctx context.Context, addr string, workers prometheus.Gatherer) (func(), error) {
	if addr == "" {
		return func() {}, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("failed to listen on debug address %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	// ContinueOnError: a family that differs between the snapshotter and a
	// worker of another version (help text, type) is left out and logged;
	// the rest of the page is still served.
	mux.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{metrics.Registry, workers}, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      promErrorLog{ctx},
	}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.G(ctx).WithError(err).Error("debug server stopped")
		}
	}()
	log.G(ctx).WithField("address", l.Addr().String()).Info("serving pprof and metrics")
	return func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}, nil
}

// promErrorLog sends promhttp's errors to the snapshotter's log.
type promErrorLog struct{ ctx context.Context }

func (l promErrorLog) Println(v ...any) {
	log.G(l.ctx).WithField("error", fmt.Sprint(v...)).Warn("metrics page is incomplete")
}
