package supervisor

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// Accesses asks the worker serving mount id for the files opened through
// it, in the order of their first open. The record lives in the worker: a
// successor that took the mount over (a failover, daemons restart) starts
// a new one.
func (s *Supervisor) Accesses(ctx context.Context, id string) (daemonapi.Accesses, error) {
	w, _ := s.findMount(id)
	if w == nil {
		return daemonapi.Accesses{}, fmt.Errorf("mount %s is served by no worker: %w", id, errdefs.ErrNotFound)
	}
	a, err := w.api.Accesses(ctx, id)
	if err != nil {
		return daemonapi.Accesses{}, err
	}
	// The worker's answer is bounded by its client; what it says is only
	// passed on, never interpreted here.
	return a.Bound(), nil
}

// ResetAccesses starts a new record of mount id's accesses.
func (s *Supervisor) ResetAccesses(ctx context.Context, id string) error {
	w, _ := s.findMount(id)
	if w == nil {
		return fmt.Errorf("mount %s is served by no worker: %w", id, errdefs.ErrNotFound)
	}
	return w.api.ResetAccesses(ctx, id)
}
