package mgmtapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// Backend answers the management API; the snapshotter implements it over
// its supervisor. Errors carry errdefs classes: ErrNotFound for an unknown
// worker, ErrFailedPrecondition for a worker that cannot be restarted.
type Backend interface {
	Status(ctx context.Context) (Status, error)
	Workers(ctx context.Context) ([]Worker, error)
	Worker(ctx context.Context, id string) (Worker, error)
	// Restart replaces the worker by a new process without a container
	// error and returns once the successor serves.
	Restart(ctx context.Context, id string) (Restart, error)
	// LogPath is where the worker's output goes, also for a worker that
	// is gone (its log says why).
	LogPath(ctx context.Context, id string) (string, error)
	Mounts(ctx context.Context) ([]Mount, error)
	// Shutdown starts the snapshotter's stop, as SIGTERM does, or a drain
	// with unmountAll, and returns without waiting for it, with the pid of
	// the process that stops.
	Shutdown(ctx context.Context, unmountAll bool) (pid int, err error)
}

type server struct {
	b   Backend
	mux *http.ServeMux
}

// NewServer answers the management API with b. Every error is JSON
// ErrorInfo; malformed requests never reach b.
func NewServer(b Backend) http.Handler {
	s := &server{b: b, mux: http.NewServeMux()}
	routes := []struct {
		method, path string
		handler      http.HandlerFunc
	}{
		{http.MethodGet, PathStatus, s.status},
		{http.MethodGet, pathWorkerList, s.workers},
		{http.MethodGet, PathWorkers + "{id}", s.worker},
		{http.MethodPost, PathWorkers + "{id}/restart", s.restart},
		{http.MethodGet, PathWorkers + "{id}/logs", s.logs},
		{http.MethodGet, PathMounts, s.mounts},
		{http.MethodGet, PathMounts + "/{id}" + pathAccessesSuffix, s.accesses},
		{http.MethodPost, PathMounts + "/{id}" + pathAccessesResetSuffix, s.resetAccesses},
		{http.MethodPost, PathShutdown, s.shutdown},
	}
	for _, rt := range routes {
		s.mux.HandleFunc(rt.method+" "+rt.path, rt.handler)
		// Every other method gets a JSON answer too (the mux's own is text).
		allow := rt.method
		s.mux.HandleFunc(rt.path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(r.Context(), w, fmt.Errorf("method %s not allowed on %s (allowed: %s): %w", r.Method, r.URL.Path, allow, errdefs.ErrNotImplemented))
		})
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(r.Context(), w, fmt.Errorf("no such endpoint %s: %w", r.URL.Path, errdefs.ErrNotFound))
	})
	return s
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log.G(r.Context()).WithField("method", r.Method).WithField("path", r.URL.Path).Trace("management api request")
	s.mux.ServeHTTP(w, r)
}

func (s *server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.b.Status(r.Context())
	answer(w, r, st, err)
}

func (s *server) workers(w http.ResponseWriter, r *http.Request) {
	ws, err := s.b.Workers(r.Context())
	if ws == nil {
		ws = []Worker{} // a list, never null, for scripts
	}
	answer(w, r, ws, err)
}

func (s *server) mounts(w http.ResponseWriter, r *http.Request) {
	ms, err := s.b.Mounts(r.Context())
	if ms == nil {
		ms = []Mount{}
	}
	answer(w, r, ms, err)
}

func (s *server) shutdown(w http.ResponseWriter, r *http.Request) {
	var all bool
	switch v := r.URL.Query().Get("unmount_all"); v {
	case "", "false":
	case "true":
		all = true
	default:
		writeError(r.Context(), w, fmt.Errorf("unmount_all=%q: want true or false: %w", v, errdefs.ErrInvalidArgument))
		return
	}
	pid, err := s.b.Shutdown(r.Context(), all)
	if err == nil {
		log.G(r.Context()).WithField("unmount_all", all).Warn("shutdown requested through the management api")
	}
	answer(w, r, Shutdown{UnmountAll: all, PID: pid}, err)
}

func (s *server) worker(w http.ResponseWriter, r *http.Request) {
	ctx, id, ok := workerRequest(w, r)
	if !ok {
		return
	}
	wk, err := s.b.Worker(ctx, id)
	answer(w, r, wk, err)
}

func (s *server) restart(w http.ResponseWriter, r *http.Request) {
	ctx, id, ok := workerRequest(w, r)
	if !ok {
		return
	}
	// A restart half done when the operator hangs up is still safe, but
	// one that is finished is better: it runs to its end (the supervisor
	// bounds it) and the server's shutdown waits for it.
	res, err := s.b.Restart(context.WithoutCancel(ctx), id)
	if err == nil {
		log.G(ctx).WithField("old_pid", res.OldPID).WithField("successor_pid", res.NewPID).Info("worker restarted through the management api")
	}
	answer(w, r, res, err)
}

func (s *server) logs(w http.ResponseWriter, r *http.Request) {
	ctx, id, ok := workerRequest(w, r)
	if !ok {
		return
	}
	opts, err := parseLogOptions(r)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	path, err := s.b.LogPath(ctx, id)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	t := logTail{path: path, lines: opts.Tail, follow: opts.Follow, interval: logFollowInterval, out: &flushWriter{w: w}}
	// Errors before the first byte (no such log) are answered as errors;
	// later ones can only end the stream, which the client sees as a
	// truncated body.
	if err := t.run(ctx, func() {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
	}); err != nil {
		if !t.started {
			writeError(ctx, w, err)
			return
		}
		log.G(ctx).WithError(err).Warn("worker log stream ended")
	}
}

// workerRequest validates the worker id of the path and adds it to the
// request's logger.
func workerRequest(w http.ResponseWriter, r *http.Request) (context.Context, string, bool) {
	id := r.PathValue("id")
	ctx := r.Context()
	if err := ValidateWorkerID(id); err != nil {
		writeError(ctx, w, err)
		return ctx, "", false
	}
	return log.WithLogger(ctx, log.G(ctx).WithField("worker_id", id)), id, true
}

// parseLogOptions reads tail (a number of lines; absent: the whole log)
// and follow (a boolean) from the query.
func parseLogOptions(r *http.Request) (LogOptions, error) {
	q := r.URL.Query()
	opts := LogOptions{Tail: -1}
	if v := q.Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return opts, fmt.Errorf("tail=%q: want a number of lines, 0 or more: %w", v, errdefs.ErrInvalidArgument)
		}
		opts.Tail = n
	}
	if v := q.Get("follow"); v != "" {
		f, err := strconv.ParseBool(v)
		if err != nil {
			return opts, fmt.Errorf("follow=%q: want true or false: %w", v, errdefs.ErrInvalidArgument)
		}
		opts.Follow = f
	}
	return opts, nil
}

// ValidateWorkerID refuses what cannot be a worker id, so that an id never
// names a path outside the run or log dir.
func ValidateWorkerID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\\\x00") || len(id) > 255 {
		return fmt.Errorf("%q is not a worker id: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

func answer(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		writeError(r.Context(), w, err)
		return
	}
	writeJSON(r.Context(), w, http.StatusOK, v)
}

// flushWriter sends every write to the client at once: a followed log is
// read as it grows.
type flushWriter struct{ w http.ResponseWriter }

func (f *flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = http.NewResponseController(f.w).Flush()
	}
	return n, err
}
