package supervisor

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/layer"
)

// Verify asks the worker serving mount id for the digests of the layer's
// whole blob. A mount being mounted again (after a restart or a worker's
// death) is waited for first. What the worker answers is hostile input's
// digest, parsed here as digests only.
func (s *Supervisor) Verify(ctx context.Context, id string) (layer.BlobDigests, error) {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("mount_id", id))
	if err := s.pending.wait(ctx, id); err != nil {
		return layer.BlobDigests{}, err
	}
	w, _ := s.findMount(id)
	if w == nil {
		return layer.BlobDigests{}, fmt.Errorf("mount %s is served by no worker: %w", id, errdefs.ErrNotFound)
	}
	info, err := w.api.Verify(ctx, id)
	if err != nil {
		return layer.BlobDigests{}, err
	}
	out := layer.BlobDigests{Size: info.Size, UncompressedSize: info.UncompressedSize, DecompressError: info.DecompressError}
	if out.Digest, err = digest.Parse(info.Digest); err != nil {
		return layer.BlobDigests{}, fmt.Errorf("worker %s: verify %s: digest %q: %w: %w", w.id, id, info.Digest, errdefs.ErrUnknown, err)
	}
	if info.DiffID != "" {
		if out.DiffID, err = digest.Parse(info.DiffID); err != nil {
			return layer.BlobDigests{}, fmt.Errorf("worker %s: verify %s: diff id %q: %w: %w", w.id, id, info.DiffID, errdefs.ErrUnknown, err)
		}
	}
	return out, nil
}

// SetVerdict tells the worker serving mount id whether its layer was
// proven (forged=false) or found forged, and the DiffID its blob has, so
// that the worker reports it (snapshotterctl daemons inspect).
func (s *Supervisor) SetVerdict(ctx context.Context, id string, forged bool, diffID digest.Digest) error {
	w, m := s.findMount(id)
	if w == nil {
		return fmt.Errorf("mount %s is served by no worker: %w", id, errdefs.ErrNotFound)
	}
	v := daemonapi.VerdictRequest{State: daemonapi.Verified, DiffID: diffID.String()}
	if forged {
		v.State = daemonapi.Forged
	}
	// Kept with the mount: a successor that takes it over is told again.
	w.mu.Lock()
	m.verdict = &v
	w.mu.Unlock()
	return w.api.SetVerdict(ctx, id, v)
}
