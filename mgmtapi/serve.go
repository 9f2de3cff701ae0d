package mgmtapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// shutdownGrace is how long a request in flight (a restart) may finish
// once the server closes.
const shutdownGrace = 10 * time.Second

// Server serves the management API on a unix socket.
type Server struct {
	path   string
	srv    *http.Server
	cancel context.CancelFunc // ends followed logs
	served chan error

	once     sync.Once
	closeErr error
}

// Listen binds the socket at path (mode 0600, its directory created 0700
// when missing, a stale socket file replaced) and serves h on it until
// Close. Requests' contexts carry ctx's values (its logger).
func Listen(ctx context.Context, path string, h http.Handler) (*Server, error) {
	// The worker API's listener: one way to bind a private unix socket.
	l, err := daemonapi.ListenAPI(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("management api: %w", err)
	}
	base, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Server{
		path:   path,
		cancel: cancel,
		served: make(chan error, 1),
		srv: &http.Server{
			Handler:     h,
			BaseContext: func(net.Listener) context.Context { return base },
			// A client that connects and stalls must not hold a
			// connection: requests have no body, so the header
			// timeout bounds them. No ReadTimeout: once it passes,
			// net/http cancels the request's ctx, which would cut a
			// followed log after that long; no write timeout either.
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       time.Minute,
		},
	}
	go func() { s.served <- s.srv.Serve(l) }()
	log.G(ctx).WithField("socket", path).Info("serving the management api")
	return s, nil
}

// Close stops accepting, ends followed logs at once, lets other requests
// (a restart) finish within a grace period, and removes the socket. It is
// idempotent.
func (s *Server) Close(ctx context.Context) error {
	s.once.Do(func() { s.closeErr = s.close(ctx) })
	return s.closeErr
}

func (s *Server) close(ctx context.Context) error {
	s.cancel()
	gctx, cancel := context.WithTimeout(ctx, shutdownGrace)
	defer cancel()
	err := s.srv.Shutdown(gctx)
	if err != nil {
		err = errors.Join(fmt.Errorf("management api on %s: requests still running after %v: %w", s.path, shutdownGrace, err), s.srv.Close())
	}
	if serr := <-s.served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("management api on %s: %w", s.path, serr))
	}
	return err
}
