package daemonapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

const (
	// shutdownGrace is how long requests in flight may finish once
	// serving stops; then their contexts are cancelled.
	shutdownGrace = 5 * time.Second
	// readHeaderTimeout and readTimeout bound a client that connects and
	// stalls; requests are small. There is no write timeout: loading a
	// layer takes as long as its registry does, bounded by the backend.
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 60 * time.Second
)

// ListenAndServe serves h on a unix socket at path (mode 0600; the parent
// directory is created 0700 if missing; a stale socket file is replaced)
// until ctx is cancelled. It then stops accepting, lets requests in flight
// finish for a grace period, cancels those still running, waits for them
// and returns nil. Requests' contexts carry ctx's values (its logger) but
// not its cancellation.
func ListenAndServe(ctx context.Context, path string, h http.Handler) error {
	l, err := ListenAPI(ctx, path)
	if err != nil {
		return err
	}
	return Serve(ctx, l, h)
}

// ListenAPI binds the API socket at path as ListenAndServe does, for a
// worker that tells its supervisor it is ready once both its sockets are
// bound, before it serves them.
func ListenAPI(ctx context.Context, path string) (net.Listener, error) {
	return listenUnix(ctx, "unix", path)
}

// Serve serves h on l (from ListenAPI) as ListenAndServe does, and closes l.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	path := l.Addr().String()
	base, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	var handlers handlerGroup
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !handlers.enter() {
				writeError(r.Context(), w, fmt.Errorf("worker api is stopping: %w", errdefs.ErrUnavailable))
				return
			}
			defer handlers.wg.Done()
			h.ServeHTTP(w, r)
		}),
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	select {
	case err := <-served:
		handlers.stopAndWait()
		return fmt.Errorf("failed to serve api on %s: %w", path, err)
	case <-ctx.Done():
	}
	graceCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(graceCtx); err != nil {
		log.G(ctx).WithError(err).WithField("socket", path).Warn("api requests still running after grace period, cancelling them")
		cancelRequests()
		srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.G(ctx).WithError(err).WithField("socket", path).Warn("api server ended with an error")
	}
	handlers.stopAndWait()
	return nil
}

// handlerGroup tracks running handlers so that ListenAndServe returns only
// after the last one (http.Server.Close does not wait for them).
type handlerGroup struct {
	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup
}

func (g *handlerGroup) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return false
	}
	g.wg.Add(1)
	return true
}

func (g *handlerGroup) stopAndWait() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	g.wg.Wait()
}
