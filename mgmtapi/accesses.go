package mgmtapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// Paths below PathMounts+"/{id}" for the record of file accesses through a
// lazily mounted layer, as its worker keeps it: GET .../accesses, POST
// .../accesses/reset.
const (
	pathAccessesSuffix      = "/accesses"
	pathAccessesResetSuffix = "/accesses/reset"
)

// AccessRecorder is the optional part of a Backend that reports the file
// accesses of mounts (what `snapshotterctl image optimize` prioritizes). A
// backend without it answers both paths with errdefs.ErrNotImplemented.
type AccessRecorder interface {
	Accesses(ctx context.Context, mountID string) (daemonapi.Accesses, error)
	ResetAccesses(ctx context.Context, mountID string) error
}

// Accesses returns the files of mount id in the order of their first open.
func (c *Client) Accesses(ctx context.Context, id string) (daemonapi.Accesses, error) {
	var a daemonapi.Accesses
	err := c.do(ctx, http.MethodGet, PathMounts+"/"+url.PathEscape(id)+pathAccessesSuffix, &a)
	return a, c.wrap("accesses of mount "+id, err)
}

// ResetAccesses starts a new record of mount id's accesses.
func (c *Client) ResetAccesses(ctx context.Context, id string) error {
	var a daemonapi.Accesses
	err := c.do(ctx, http.MethodPost, PathMounts+"/"+url.PathEscape(id)+pathAccessesResetSuffix, &a)
	return c.wrap("reset accesses of mount "+id, err)
}

func (s *server) accesses(w http.ResponseWriter, r *http.Request) {
	ctx, id, rec, ok := s.recorderRequest(w, r)
	if !ok {
		return
	}
	a, err := rec.Accesses(ctx, id)
	answer(w, r, a.Bound(), err)
}

func (s *server) resetAccesses(w http.ResponseWriter, r *http.Request) {
	ctx, id, rec, ok := s.recorderRequest(w, r)
	if !ok {
		return
	}
	// The empty record that starts now.
	answer(w, r, daemonapi.Accesses{MountID: id, Files: []string{}}, rec.ResetAccesses(ctx, id))
}

func (s *server) recorderRequest(w http.ResponseWriter, r *http.Request) (context.Context, string, AccessRecorder, bool) {
	ctx := r.Context()
	id := r.PathValue("id")
	if err := daemonapi.ValidateMountID(id); err != nil {
		writeError(ctx, w, err)
		return ctx, "", nil, false
	}
	rec, ok := s.b.(AccessRecorder)
	if !ok {
		writeError(ctx, w, fmt.Errorf("the snapshotter records no accesses: %w", errdefs.ErrNotImplemented))
		return ctx, "", nil, false
	}
	return log.WithLogger(ctx, log.G(ctx).WithField("mount_id", id)), id, rec, true
}
