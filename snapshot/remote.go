package snapshot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/lazyfs/lazyfs/labels"
	"github.com/lazyfs/lazyfs/layer"
	"github.com/lazyfs/lazyfs/metrics"
)

// RemoteLayers mounts layers lazily: the supervisor implements it with FUSE
// mounts served by lazyfsd workers.
type RemoteLayers interface {
	// Mount makes layer l visible at mountpoint; id names the mount (it is
	// the snapshot's id). Any error means the layer is unpacked as usual
	// instead.
	Mount(ctx context.Context, id, mountpoint string, l layer.Layer) error
	// Unmount stops serving the mount and unmounts it.
	Unmount(ctx context.Context, id, mountpoint string) error
	// Restore makes sure a remote snapshot of an earlier run is served at
	// mountpoint again. It returns at once and does the work in the
	// background (never waiting on a registry); Wait tells when it is done.
	Restore(ctx context.Context, id, mountpoint string, l layer.Layer) error
	// Wait returns once none of the given snapshot ids is being mounted
	// again (after a restart or a worker's death), or an error if one could
	// not be. Ids that are not remote mounts return at once.
	Wait(ctx context.Context, ids []string) error
	// Prover proves a mounted layer against its chain ID.
	Prover
}

// parentWait bounds how long Prepare, View and Mounts wait for lower layers
// that are being mounted again; a worker's start is well below it.
const parentWait = 30 * time.Second

// waitParents makes sure every lazily loaded parent of snap is mounted:
// until it is mounted again its directory is empty, and a container started
// on it would run on a partial image.
func (s *Snapshotter) waitParents(ctx context.Context, snap storage.Snapshot) error {
	if s.remote == nil || len(snap.ParentIDs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, parentWait)
	defer cancel()
	return s.remote.Wait(ctx, snap.ParentIDs)
}

// WithRemoteLayers turns on lazy mounting of eStargz layers through r.
func WithRemoteLayers(r RemoteLayers) Opt {
	return func(o *options) { o.remote = r }
}

// prepareRemote tries to mount the layer that Prepare(key, parent) is about
// to unpack lazily. It returns ok=false when the layer must be unpacked as
// usual; otherwise the snapshot is committed under its chain ID and err
// wraps ErrAlreadyExists, which tells containerd to skip download and unpack.
//
// A chain ID already mounted lazily is reused only for the same blob, or
// for another blob once the stored one is proven to have the DiffID the
// chain ID implies (mayReuse); a stored blob found forged is quarantined and
// the requester gets its own. ok=true with another error is the clear error
// of a Prepare that must neither reuse nor unpack (a proof that did not
// finish in time or could not be made).
func (s *Snapshotter) prepareRemote(ctx context.Context, key, parent string, opts []snapshots.Opt) (ok bool, err error) {
	var base snapshots.Info
	for _, opt := range opts {
		if err := opt(&base); err != nil {
			return false, err
		}
	}
	target := base.Labels[labels.TargetSnapshotRef]
	if target == "" {
		return false, nil // not a layer being unpacked: a container's rootfs or a view
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("chain_id", target))
	layer, err := labels.ParseLayer(base.Labels)
	if err != nil {
		s.fallback(ctx, s.notLazyReason(ctx, base.Labels, err), err)
		return false, nil
	}
	ctx = log.WithLogger(ctx, log.G(ctx).
		WithField("layer_digest", layer.LayerDigest).
		WithField("image_ref", layer.ImageRef))

	stored, found, err := s.findRemote(ctx, target, parent)
	if err != nil {
		return true, err
	}
	if found {
		reuse, err := s.mayReuse(ctx, stored, layer)
		if err != nil {
			return true, err
		}
		if reuse {
			return true, fmt.Errorf("snapshot %s: %w", target, errdefs.ErrAlreadyExists)
		}
		// The stored layer was found forged and quarantined: this image
		// gets its own blob, which is what its manifest names.
	}

	start := time.Now()
	snap, err := s.createSnapshot(ctx, snapshots.KindActive, key, parent, opts)
	if err != nil {
		return false, err
	}
	mountpoint := s.upperPath(snap.ID)
	if err := s.remote.Mount(ctx, snap.ID, mountpoint, layer); err != nil {
		s.abandon(ctx, key, "")
		s.fallback(ctx, "mount_failed", err)
		return false, nil
	}
	name, err := s.commitRemote(ctx, key, target, snap.ID, opts)
	if err != nil {
		s.abandon(ctx, key, mountpoint)
		if errdefs.IsAlreadyExists(err) {
			// Another pull of the same layer won the race: use its snapshot.
			return true, fmt.Errorf("snapshot %s: %w", target, errdefs.ErrAlreadyExists)
		}
		if errdefs.IsUnavailable(err) {
			return true, err // another blob won the race: prove it first
		}
		s.fallback(ctx, "commit_failed", err)
		return false, nil
	}
	metrics.MountDuration.Observe(time.Since(start).Seconds())
	log.G(ctx).WithField("snapshot_id", snap.ID).WithField("snapshot", name).WithField("duration", time.Since(start)).Info("layer mounted lazily")
	return true, fmt.Errorf("layer %s mounted lazily as %s: %w", layer.LayerDigest, target, errdefs.ErrAlreadyExists)
}

// abandon removes the active snapshot of a failed lazy mount, unmounting it
// first when the mount was made.
func (s *Snapshotter) abandon(ctx context.Context, key, mountpoint string) {
	var id string
	err := s.ms.WithTransaction(ctx, true, func(ctx context.Context) (err error) {
		id, _, err = storage.Remove(ctx, key)
		return err
	})
	if err != nil {
		log.G(ctx).WithError(err).WithField("key", key).Warn("failed to remove snapshot of a failed lazy mount")
		return
	}
	if mountpoint != "" {
		if err := s.remote.Unmount(ctx, id, mountpoint); err != nil {
			log.G(ctx).WithError(err).WithField("mountpoint", mountpoint).Warn("failed to unmount a failed lazy mount")
		}
	}
	s.removeDir(ctx, s.snapshotPath(id))
}

// fallback records that a layer is unpacked as usual instead of lazily.
func (s *Snapshotter) fallback(ctx context.Context, reason string, err error) {
	if errors.Is(err, labels.ErrNotRemote) {
		// The common case for ordinary images: keep it out of the warnings
		// (an eStargz layer without labels was warned about once).
		log.G(ctx).WithError(err).WithField("reason", reason).Debug("falling back to unpacking the layer as usual")
	} else {
		log.G(ctx).WithError(err).WithField("reason", reason).Warn("falling back to unpacking the layer as usual")
	}
	metrics.Fallbacks.WithLabelValues(reason).Inc()
}

// Restore serves again every remote snapshot kept from an earlier run. It
// returns at once; the remote layers mount each snapshot again in the
// background, so that a registry that is down delays nothing (it only makes
// those reads fail), and Prepare, View and Mounts wait for the layers they
// stack.
func (s *Snapshotter) Restore(ctx context.Context) error {
	if s.remote == nil {
		return nil
	}
	type remote struct {
		id, mountpoint string
		labels         map[string]string
	}
	var found []remote
	err := s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		return storage.WalkInfo(ctx, func(ctx context.Context, info snapshots.Info) error {
			if info.Labels[labels.Remote] == "" {
				return nil
			}
			id, _, _, err := storage.GetInfo(ctx, info.Name)
			if err != nil {
				return err
			}
			found = append(found, remote{id: id, mountpoint: s.upperPath(id), labels: info.Labels})
			return nil
		})
	})
	if err != nil && !errdefs.IsNotFound(err) { // NotFound: a new, empty store
		return fmt.Errorf("failed to list remote snapshots: %w", err)
	}
	for _, r := range found {
		// Synchronous: by the time Restore returns, every layer is either
		// served or known to be pending, so no Prepare can miss it.
		// Parsed here, once; a snapshot whose labels do not parse is still
		// handed on (as the zero layer, which the remote layers refuse), so
		// that waiting for it reports the failure instead of finding an
		// empty directory.
		l, err := labels.ParseLayer(r.labels)
		if err != nil {
			log.G(ctx).WithError(err).WithField("mountpoint", r.mountpoint).Error("a lazily loaded layer of the last run has unreadable labels")
		}
		if err := s.remote.Restore(ctx, r.id, r.mountpoint, l); err != nil {
			log.G(ctx).WithError(err).WithField("mountpoint", r.mountpoint).Error("failed to restore a lazily loaded layer")
		}
	}
	verdicts := map[string]proof{}
	for _, r := range found {
		if p, ok := recordedProof(snapshots.Info{Labels: r.labels}); ok {
			verdicts[r.id] = p
		}
	}
	s.restoreVerdicts(ctx, verdicts)
	log.G(ctx).WithField("count", len(found)).Info("restoring lazily loaded layers in the background")
	return nil
}

// isRemote reports whether info is a lazily mounted layer.
func isRemote(info snapshots.Info) bool { return info.Labels[labels.Remote] != "" }
