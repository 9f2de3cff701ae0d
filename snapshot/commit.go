package snapshot

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/continuity/fs"
)

// Commit turns the active snapshot key into the committed snapshot name,
// keeping its labels (containerd.io/snapshot.ref among them) and recording
// its disk usage.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	return s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		id, _, _, err := storage.GetInfo(ctx, key)
		if err != nil {
			return err
		}
		du, err := fs.DiskUsage(ctx, s.upperPath(id))
		if err != nil {
			return fmt.Errorf("failed to measure usage of snapshot %q: %w", key, err)
		}
		if _, err := storage.CommitActive(ctx, key, name, snapshots.Usage(du), opts...); err != nil {
			return fmt.Errorf("failed to commit snapshot %q as %q: %w", key, name, err)
		}
		return nil
	})
}
