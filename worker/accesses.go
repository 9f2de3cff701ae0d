package worker

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/daemonapi"
)

var _ daemonapi.AccessRecorder = (*Worker)(nil)

// Accesses returns the files of a mount in the order of their first open
// through it (lazyfs.FS.Accesses), since the mount was loaded in this
// process or last reset.
func (w *Worker) Accesses(ctx context.Context, mountID string) (daemonapi.Accesses, error) {
	m, err := w.mountByID(mountID)
	if err != nil {
		return daemonapi.Accesses{}, err
	}
	return daemonapi.Accesses{MountID: mountID, LayerDigest: m.req.LayerDigest, Files: m.fs.Accesses()}, nil
}

// ResetAccesses starts a new record of a mount's accesses.
func (w *Worker) ResetAccesses(ctx context.Context, mountID string) error {
	m, err := w.mountByID(mountID)
	if err != nil {
		return err
	}
	m.fs.ResetAccesses()
	return nil
}

func (w *Worker) mountByID(mountID string) (*mount, error) {
	w.mu.Lock()
	m, ok := w.mounts[mountID]
	w.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("mount %s: %w", mountID, errdefs.ErrNotFound)
	}
	return m, nil
}
