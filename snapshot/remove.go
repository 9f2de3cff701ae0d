package snapshot

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// Remove deletes the snapshot key from the metadata and then its directory.
// Once the transaction is committed the snapshot is gone for containerd, so
// a directory that cannot be removed is only logged; Cleanup retries it.
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	var (
		id   string
		info snapshots.Info
	)
	err := s.ms.WithTransaction(ctx, true, func(ctx context.Context) (err error) {
		if _, info, _, err = storage.GetInfo(ctx, key); err != nil {
			return err
		}
		id, _, err = storage.Remove(ctx, key)
		if err != nil {
			return fmt.Errorf("failed to remove snapshot %q: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if isRemote(info) && s.remote != nil {
		if err := s.remote.Unmount(ctx, id, s.upperPath(id)); err != nil {
			log.G(ctx).WithError(err).WithField("key", key).Warn("failed to unmount a lazily loaded layer")
		}
	}
	s.removeDir(ctx, s.snapshotPath(id))
	return nil
}

// Cleanup removes every snapshot directory that no metadata names: those of
// removed snapshots whose removal failed, and those a crash left half built.
func (s *Snapshotter) Cleanup(ctx context.Context) error {
	var orphans []string
	// A write transaction keeps creations out while the directory is listed:
	// a snapshot being created is named in the metadata before it is renamed
	// into place, and its temporary directory is never listed as an orphan
	// while the transaction creating it runs.
	err := s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		ids, err := storage.IDMap(ctx)
		if err != nil && !errdefs.IsNotFound(err) { // NotFound: a new, empty store
			return err
		}
		entries, err := os.ReadDir(s.snapshotsPath())
		if err != nil {
			return fmt.Errorf("failed to list snapshot directories: %w", err)
		}
		for _, e := range entries {
			if _, ok := ids[e.Name()]; !ok {
				orphans = append(orphans, s.snapshotPath(e.Name()))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, dir := range orphans {
		s.removeDir(ctx, dir)
	}
	return nil
}

// removeDir removes a snapshot directory. Whatever is still mounted below it
// (a stale FUSE mount of a crashed worker) is detached first: RemoveAll must
// never walk into a FUSE mount, which could block on a dead worker or make
// the worker download the layer only to fail on a read-only filesystem.
func (s *Snapshotter) removeDir(ctx context.Context, dir string) {
	if err := detachMountsUnder(dir); err != nil {
		log.G(ctx).WithError(err).WithField("path", dir).Warn("failed to unmount below a snapshot directory; leaving it")
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		log.G(ctx).WithError(err).WithField("path", dir).Warn("failed to remove snapshot directory")
	}
}
