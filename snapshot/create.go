package snapshot

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/log"

	"github.com/lazyfs/lazyfs/layout"
)

// Prepare creates an active snapshot on top of parent and returns the mounts
// that make it writable.
//
// A layer being unpacked whose labels describe a lazily loadable layer is
// mounted through the remote layers instead, committed, and reported with
// ErrAlreadyExists so that containerd skips its download.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("key", key).WithField("parent", parent))
	if s.remote != nil {
		if ok, err := s.prepareRemote(ctx, key, parent, opts); ok || err != nil {
			return nil, err
		}
	}
	return s.create(ctx, snapshots.KindActive, key, parent, opts)
}

// View creates a read-only snapshot of parent.
func (s *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("key", key).WithField("parent", parent))
	return s.create(ctx, snapshots.KindView, key, parent, opts)
}

// Mounts returns the mounts of an active or view snapshot again.
func (s *Snapshotter) Mounts(ctx context.Context, key string) (_ []mount.Mount, err error) {
	var snap storage.Snapshot
	err = s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		snap, err = storage.GetSnapshot(ctx, key)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("failed to get mounts of snapshot %q: %w", key, err)
	}
	if err := s.waitParents(ctx, snap); err != nil {
		return nil, err
	}
	return s.mounts(snap), nil
}

func (s *Snapshotter) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) ([]mount.Mount, error) {
	snap, err := s.createSnapshot(ctx, kind, key, parent, opts)
	if err != nil {
		return nil, err
	}
	if err := s.waitParents(ctx, snap); err != nil {
		// Leave nothing behind: the caller may retry with the same key.
		if rerr := s.Remove(ctx, key); rerr != nil {
			log.G(ctx).WithError(rerr).Warn("failed to remove a snapshot whose parents are not mounted")
		}
		return nil, err
	}
	return s.mounts(snap), nil
}

// createSnapshot creates the metadata and the directory of a snapshot in one
// transaction.
func (s *Snapshotter) createSnapshot(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) (snap storage.Snapshot, err error) {
	var (
		tmp     string // directory under construction, removed on failure
		created string // final directory, removed if the transaction fails after the rename
	)
	defer func() {
		if err == nil {
			return
		}
		for _, dir := range []string{tmp, created} {
			if dir == "" {
				continue
			}
			if rerr := os.RemoveAll(dir); rerr != nil {
				log.G(ctx).WithError(rerr).WithField("path", dir).Warn("failed to remove directory of failed snapshot")
			}
		}
	}()

	err = s.ms.WithTransaction(ctx, true, func(ctx context.Context) (err error) {
		tmp, err = s.makeTempDir(kind)
		if err != nil {
			return err
		}
		snap, err = storage.CreateSnapshot(ctx, kind, key, parent, opts...)
		if err != nil {
			return fmt.Errorf("failed to create snapshot %q: %w", key, err)
		}
		if len(snap.ParentIDs) > 0 {
			// A new layer's root directory starts out owned like its parent's,
			// so that an image whose root is not owned by root keeps it that way.
			if err := copyOwner(s.upperPath(snap.ParentIDs[0]), layout.FS(tmp)); err != nil {
				return err
			}
		}
		created = s.snapshotPath(snap.ID)
		if err := os.Rename(tmp, created); err != nil {
			created = ""
			return fmt.Errorf("failed to move snapshot directory into place: %w", err)
		}
		tmp = ""
		return nil
	})
	return snap, err
}

// makeTempDir creates snapshots/new-XXXX/{fs,work}; work only for active
// snapshots, which are the only ones overlayfs writes to.
func (s *Snapshotter) makeTempDir(kind snapshots.Kind) (string, error) {
	tmp, err := os.MkdirTemp(s.snapshotsPath(), tempPrefix)
	if err != nil {
		return "", fmt.Errorf("failed to create snapshot directory: %w", err)
	}
	if err := os.Mkdir(layout.FS(tmp), 0o755); err != nil {
		return tmp, fmt.Errorf("failed to create snapshot directory: %w", err)
	}
	if kind == snapshots.KindActive {
		if err := os.Mkdir(layout.Work(tmp), 0o711); err != nil {
			return tmp, fmt.Errorf("failed to create snapshot directory: %w", err)
		}
	}
	return tmp, nil
}

func copyOwner(from, to string) error {
	var st os.FileInfo
	st, err := os.Lstat(from)
	if err != nil {
		return fmt.Errorf("failed to stat parent snapshot: %w", err)
	}
	uid, gid := ownerOf(st)
	if err := os.Lchown(to, uid, gid); err != nil {
		return fmt.Errorf("failed to chown snapshot directory: %w", err)
	}
	return nil
}
