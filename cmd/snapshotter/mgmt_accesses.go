package main

import (
	"context"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/mgmtapi"
)

var _ mgmtapi.AccessRecorder = mgmtBackend{}

// Accesses passes on the record of the worker serving the mount.
func (b mgmtBackend) Accesses(ctx context.Context, mountID string) (daemonapi.Accesses, error) {
	return b.sup.Accesses(ctx, mountID)
}

// ResetAccesses starts a new record in the worker serving the mount.
func (b mgmtBackend) ResetAccesses(ctx context.Context, mountID string) error {
	return b.sup.ResetAccesses(ctx, mountID)
}
