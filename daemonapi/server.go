package daemonapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// maxRequestBody bounds a request body: a load request is a few hundred
// bytes.
const maxRequestBody = 64 << 10

// ServerOption configures NewServer.
type ServerOption func(*server)

// WithWorkerID adds the worker id to the logger of every request's ctx
// (field worker_id), so that the backend's log lines name their worker.
func WithWorkerID(id string) ServerOption {
	return func(s *server) { s.workerID = id }
}

type server struct {
	b        Backend
	metrics  http.Handler
	workerID string
	mux      *http.ServeMux
}

// NewServer answers the worker's HTTP API with b, and GET /metrics with
// metrics (nil: 404). Every error is answered as JSON ErrorInfo with the
// status errhttp gives its errdefs class; malformed requests never reach b.
func NewServer(b Backend, metrics http.Handler, opts ...ServerOption) http.Handler {
	s := &server{b: b, metrics: metrics, mux: http.NewServeMux()}
	for _, o := range opts {
		o(s)
	}
	routes := []struct {
		method, path string
		handler      http.HandlerFunc
	}{
		{http.MethodGet, PathDaemon, s.info},
		{http.MethodPost, PathShutdown, s.shutdown},
		{http.MethodPost, PathLayers, s.loadLayer},
		{http.MethodDelete, PathMounts + "{id}", s.detach},
		{http.MethodPost, PathMounts + "{id}" + PathVerifySuffix, s.verify},
		{http.MethodPost, PathMounts + "{id}" + PathVerdictSuffix, s.verdict},
		{http.MethodGet, PathMounts + "{id}" + PathAccessesSuffix, s.accesses},
		{http.MethodPost, PathMounts + "{id}" + PathAccessesResetSuffix, s.resetAccesses},
		{http.MethodGet, PathHealth, s.health},
		{http.MethodGet, PathMetrics, s.serveMetrics},
	}
	for _, rt := range routes {
		s.mux.HandleFunc(rt.method+" "+rt.path, rt.handler)
		// The same path without a method catches every other method,
		// so that it too gets a JSON answer (the mux's own is text).
		allow := rt.method
		if allow == http.MethodGet {
			allow += ", " + http.MethodHead
		}
		s.mux.HandleFunc(rt.path, methodNotAllowed(allow))
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(r.Context(), w, fmt.Errorf("no such endpoint %s: %w", r.URL.Path, errdefs.ErrNotFound))
	})
	return s
}

// ServeHTTP gives the request its logger, then routes it.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	entry := log.G(r.Context())
	if s.workerID != "" {
		entry = entry.WithField("worker_id", s.workerID)
	}
	ctx := log.WithLogger(r.Context(), entry)
	log.G(ctx).WithField("method", r.Method).WithField("path", r.URL.Path).Trace("api request")
	s.mux.ServeHTTP(w, r.WithContext(ctx))
}

func (s *server) info(w http.ResponseWriter, r *http.Request) {
	info, err := s.b.Info(r.Context())
	if err != nil {
		writeError(r.Context(), w, fmt.Errorf("daemon info: %w", err))
		return
	}
	writeJSON(r.Context(), w, http.StatusOK, info)
}

func (s *server) loadLayer(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req LoadLayerRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(ctx, w, err)
		return
	}
	if err := req.validate(); err != nil {
		writeError(ctx, w, fmt.Errorf("load layer: %w", err))
		return
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithFields(log.Fields{
		"mount_id":     req.MountID,
		"layer_digest": req.LayerDigest,
		"image_ref":    req.ImageRef,
		"mountpoint":   req.Mountpoint,
	}))
	info, err := s.b.LoadLayer(ctx, req)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	writeJSON(ctx, w, http.StatusOK, info)
}

func (s *server) detach(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	if err := ValidateMountID(id); err != nil {
		writeError(ctx, w, fmt.Errorf("detach: %w", err))
		return
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("mount_id", id))
	if err := s.b.Detach(ctx, id); err != nil {
		writeError(ctx, w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) shutdown(w http.ResponseWriter, r *http.Request) {
	if err := s.b.Shutdown(r.Context()); err != nil {
		writeError(r.Context(), w, fmt.Errorf("shutdown: %w", err))
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (s *server) health(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok")
}

func (s *server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if s.metrics == nil {
		writeError(r.Context(), w, fmt.Errorf("this worker serves no metrics: %w", errdefs.ErrNotFound))
		return
	}
	s.metrics.ServeHTTP(w, r)
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		err := fmt.Errorf("method %s is not allowed on %s (allowed: %s): %w", r.Method, r.URL.Path, allow, errdefs.ErrInvalidArgument)
		log.G(r.Context()).WithError(err).Debug("rejected api request")
		writeJSON(r.Context(), w, http.StatusMethodNotAllowed, newErrorInfo(err))
	}
}

// decodeJSON reads exactly one JSON object into v, strictly: unknown
// fields, trailing data and bodies over maxRequestBody are errors.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON object")
			if terr != nil {
				err = terr
			}
		}
	}
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooLarge):
		return fmt.Errorf("request body is larger than %d bytes: %w", maxRequestBody, errdefs.ErrInvalidArgument)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("request body is empty: %w", errdefs.ErrInvalidArgument)
	default:
		return fmt.Errorf("invalid request body: %w: %w", errdefs.ErrInvalidArgument, err)
	}
}

// writeError answers err as JSON with the status of its errdefs class.
func writeError(ctx context.Context, w http.ResponseWriter, err error) {
	status := httpStatus(err)
	entry := log.G(ctx).WithError(err).WithField("status", status)
	if status >= http.StatusInternalServerError {
		entry.Warn("api request failed")
	} else {
		entry.Debug("api request failed")
	}
	writeJSON(ctx, w, status, newErrorInfo(err))
}

func writeJSON(ctx context.Context, w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		log.G(ctx).WithError(err).Error("failed to encode api response")
		status = http.StatusInternalServerError
		b, _ = json.Marshal(newErrorInfo(fmt.Errorf("failed to encode response: %w", errdefs.ErrInternal)))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if status == http.StatusNotModified {
		// A 304 carries no body: the client restores the class from
		// the status alone.
		return
	}
	w.Write(append(b, '\n'))
}
