package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/opencontainers/image-spec/identity"
)

// MountImageRootfs mounts a read-only view of an unpacked image's rootfs (for
// the host platform) from the given snapshotter at dir. The view is held by a
// lease, so containerd's garbage collector leaves it alone until cleanup,
// which unmounts dir and removes the view and the lease (once; later calls
// return the first result).
func MountImageRootfs(ctx context.Context, c *client.Client, imageRef, snapshotter, dir string) (cleanup func() error, err error) {
	img, err := c.GetImage(ctx, imageRef)
	if err != nil {
		return nil, fmt.Errorf("failed to get image %s: %w", imageRef, err)
	}
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		return nil, fmt.Errorf("failed to read rootfs of %s: %w", imageRef, err)
	}
	chainID := identity.ChainID(diffIDs).String()

	ctx, done, err := c.WithLease(ctx)
	if err != nil {
		return nil, fmt.Errorf("failed to create lease: %w", err)
	}
	// Teardown must run even when the caller's ctx is cancelled already.
	bg := context.WithoutCancel(ctx)
	undo := []func() error{func() error { return done(bg) }}
	runUndo := func() error {
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			errs = append(errs, undo[i]())
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, runUndo())
		}
	}()

	sn := c.SnapshotService(snapshotter)
	key := "lazyfs-e2e-view-" + randomSuffix()
	mounts, err := sn.View(ctx, key, chainID)
	if err != nil {
		return nil, fmt.Errorf("failed to create view of %s (%s) in %s: %w", imageRef, chainID, snapshotter, err)
	}
	undo = append(undo, func() error {
		if err := sn.Remove(bg, key); err != nil {
			return fmt.Errorf("failed to remove view %s: %w", key, err)
		}
		return nil
	})
	if err := mount.All(mounts, dir); err != nil {
		return nil, fmt.Errorf("failed to mount view of %s at %s: %w", imageRef, dir, err)
	}
	undo = append(undo, func() error {
		if err := mount.UnmountAll(dir, 0); err != nil {
			return fmt.Errorf("failed to unmount %s: %w", dir, err)
		}
		return nil
	})
	var once sync.Once
	var cleanupErr error
	return func() error {
		once.Do(func() { cleanupErr = runUndo() })
		return cleanupErr
	}, nil
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}
