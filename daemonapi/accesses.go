package daemonapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/containerd/errdefs"
)

// Paths below PathMounts+"{id}" for the record of file accesses through a
// mount (what `snapshotterctl image optimize` prioritizes): GET
// .../accesses reads it, POST .../accesses/reset starts a new one.
const (
	PathAccessesSuffix      = "/accesses"
	PathAccessesResetSuffix = "/accesses/reset"
)

// MaxAccesses bounds the files one answer lists, so that an answer stays
// well under the client's 16 MiB bound whatever the layer (paths of up to
// 4 KiB are allowed; typical ones are 40 bytes). Files opened later are
// left out and Truncated says so: prioritizing more files than this gains
// nothing over prefetching the whole layer.
const MaxAccesses = 50_000

// Accesses is the record of a mount: the paths (relative to the layer's
// root) of its regular files in the order of their first open.
type Accesses struct {
	MountID     string   `json:"mount_id"`
	LayerDigest string   `json:"layer_digest"`
	Files       []string `json:"files"`
	Truncated   bool     `json:"truncated,omitempty"`
}

// Bound cuts a record to MaxAccesses files.
func (a Accesses) Bound() Accesses {
	if len(a.Files) > MaxAccesses {
		a.Files = a.Files[:MaxAccesses]
		a.Truncated = true
	}
	return a
}

// AccessRecorder is the optional part of a Backend that reports file
// accesses. A backend without it answers both paths with
// errdefs.ErrNotImplemented.
type AccessRecorder interface {
	Accesses(ctx context.Context, mountID string) (Accesses, error)
	ResetAccesses(ctx context.Context, mountID string) error
}

// Accesses returns the record of file accesses through the mount.
func (c *Client) Accesses(ctx context.Context, mountID string) (Accesses, error) {
	var a Accesses
	if err := c.do(ctx, http.MethodGet, PathMounts+url.PathEscape(mountID)+PathAccessesSuffix, nil, &a); err != nil {
		return Accesses{}, c.wrap("accesses of "+mountID, err)
	}
	return a, nil
}

// ResetAccesses starts a new record of file accesses through the mount.
func (c *Client) ResetAccesses(ctx context.Context, mountID string) error {
	if err := c.do(ctx, http.MethodPost, PathMounts+url.PathEscape(mountID)+PathAccessesResetSuffix, nil, nil); err != nil {
		return c.wrap("reset accesses of "+mountID, err)
	}
	return nil
}

func (s *server) accesses(w http.ResponseWriter, r *http.Request) {
	ctx, id, rec, ok := s.recorderRequest(w, r, "accesses")
	if !ok {
		return
	}
	a, err := rec.Accesses(ctx, id)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	writeJSON(ctx, w, http.StatusOK, a.Bound())
}

func (s *server) resetAccesses(w http.ResponseWriter, r *http.Request) {
	ctx, id, rec, ok := s.recorderRequest(w, r, "reset accesses")
	if !ok {
		return
	}
	if err := rec.ResetAccesses(ctx, id); err != nil {
		writeError(ctx, w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// recorderRequest checks the mount id and that the backend records
// accesses; on failure it has answered.
func (s *server) recorderRequest(w http.ResponseWriter, r *http.Request, op string) (context.Context, string, AccessRecorder, bool) {
	ctx := r.Context()
	id := r.PathValue("id")
	if err := ValidateMountID(id); err != nil {
		writeError(ctx, w, fmt.Errorf("%s: %w", op, err))
		return ctx, "", nil, false
	}
	rec, ok := s.b.(AccessRecorder)
	if !ok {
		writeError(ctx, w, fmt.Errorf("%s: this worker records no accesses: %w", op, errdefs.ErrNotImplemented))
		return ctx, "", nil, false
	}
	return ctx, id, rec, true
}
