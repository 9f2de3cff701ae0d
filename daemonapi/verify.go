package daemonapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
)

// Paths below PathMounts+"{id}" that prove a mount's layer (DESIGN.md,
// "A chain ID's bytes are proven, not trusted"): the worker computes the
// digests of the whole blob (POST .../verify), the snapshotter judges them
// against the chain ID and tells the worker its verdict (POST .../verdict).
const (
	PathVerifySuffix  = "/verify"
	PathVerdictSuffix = "/verdict"
)

// Verification is what is known of a mount's layer identity.
type Verification string

// Verification states. A mount starts unverified; the snapshotter's
// verdict makes it verified or forged.
const (
	Unverified Verification = "unverified"
	Verified   Verification = "verified"
	Forged     Verification = "forged"
)

// VerifyInfo is what a worker computed from the whole blob of a mount's
// layer, fetched from the registry (POST /api/v1/mounts/{id}/verify).
// LayerDigest is the digest the mount serves the layer under; Digest and
// Size are those of the bytes the registry served for it; DiffID and
// UncompressedSize those of their decompressed stream. DiffID is empty when
// the blob does not decompress, and DecompressError says why.
type VerifyInfo struct {
	MountID          string `json:"mount_id"`
	LayerDigest      string `json:"layer_digest"`
	Digest           string `json:"digest"`
	Size             int64  `json:"size"`
	DiffID           string `json:"diff_id,omitempty"`
	UncompressedSize int64  `json:"uncompressed_size"`
	DecompressError  string `json:"decompress_error,omitempty"`
}

// VerdictRequest tells a worker what the snapshotter concluded from a
// mount's digests (POST /api/v1/mounts/{id}/verdict): State is Verified or
// Forged, DiffID the DiffID the blob really has (empty if it does not
// decompress).
type VerdictRequest struct {
	State  Verification `json:"state"`
	DiffID string       `json:"diff_id,omitempty"`
}

func (r VerdictRequest) validate() error {
	if r.State != Verified && r.State != Forged {
		return fmt.Errorf("state %q: want %q or %q: %w", r.State, Verified, Forged, errdefs.ErrInvalidArgument)
	}
	if r.DiffID != "" {
		if _, err := digest.Parse(r.DiffID); err != nil {
			return fmt.Errorf("diff_id %q: %w: %w", r.DiffID, errdefs.ErrInvalidArgument, err)
		}
	}
	return nil
}

// Verifier is the optional part of a Backend that proves layers. A backend
// without it answers both paths with errdefs.ErrNotImplemented.
type Verifier interface {
	// Verify fetches the mount's whole blob and returns its digests. It
	// takes as long as the download; ctx bounds it.
	Verify(ctx context.Context, mountID string) (VerifyInfo, error)
	// SetVerdict records the snapshotter's verdict on the mount.
	SetVerdict(ctx context.Context, mountID string, v VerdictRequest) error
}

// Verify asks the worker for the digests of the mount's whole blob. It
// returns when the worker has read all of it; ctx bounds the wait.
func (c *Client) Verify(ctx context.Context, mountID string) (VerifyInfo, error) {
	var info VerifyInfo
	if err := c.do(ctx, http.MethodPost, PathMounts+url.PathEscape(mountID)+PathVerifySuffix, nil, &info); err != nil {
		return VerifyInfo{}, c.wrap("verify "+mountID, err)
	}
	return info, nil
}

// SetVerdict tells the worker the snapshotter's verdict on the mount.
func (c *Client) SetVerdict(ctx context.Context, mountID string, v VerdictRequest) error {
	if err := c.do(ctx, http.MethodPost, PathMounts+url.PathEscape(mountID)+PathVerdictSuffix, v, nil); err != nil {
		return c.wrap("set verdict of "+mountID, err)
	}
	return nil
}

func (s *server) verify(w http.ResponseWriter, r *http.Request) {
	ctx, id, v, ok := s.verifierRequest(w, r, "verify")
	if !ok {
		return
	}
	info, err := v.Verify(ctx, id)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	writeJSON(ctx, w, http.StatusOK, info)
}

func (s *server) verdict(w http.ResponseWriter, r *http.Request) {
	ctx, id, v, ok := s.verifierRequest(w, r, "verdict")
	if !ok {
		return
	}
	var req VerdictRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(ctx, w, err)
		return
	}
	if err := req.validate(); err != nil {
		writeError(ctx, w, fmt.Errorf("verdict: %w", err))
		return
	}
	if err := v.SetVerdict(ctx, id, req); err != nil {
		writeError(ctx, w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// verifierRequest checks the mount id of a verify or verdict request and
// that the backend proves layers at all; on failure it has answered.
func (s *server) verifierRequest(w http.ResponseWriter, r *http.Request, op string) (context.Context, string, Verifier, bool) {
	ctx := r.Context()
	id := r.PathValue("id")
	if err := ValidateMountID(id); err != nil {
		writeError(ctx, w, fmt.Errorf("%s: %w", op, err))
		return ctx, "", nil, false
	}
	v, ok := s.b.(Verifier)
	if !ok {
		writeError(ctx, w, fmt.Errorf("%s: this worker does not prove layers: %w", op, errdefs.ErrNotImplemented))
		return ctx, "", nil, false
	}
	return log.WithLogger(ctx, log.G(ctx).WithField("mount_id", id)), id, v, true
}
