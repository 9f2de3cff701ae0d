package snapshot

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/lazyfs/lazyfs/labels"
	"github.com/lazyfs/lazyfs/layer"
)

// findRemote returns the committed remote snapshot that containerd would
// take for chain ID target on parent: the one carrying target as its ref
// label, with that parent. It looks the snapshot up the way containerd does
// after ErrAlreadyExists (a Walk on the ref label and the parent, see
// core/metadata/snapshot.go), not by name, so that what Prepare checks is
// what containerd then uses.
func (s *Snapshotter) findRemote(ctx context.Context, target, parent string) (info snapshots.Info, found bool, err error) {
	filter := fmt.Sprintf(`labels.%q==%q,parent==%q`, labels.TargetSnapshotRef, target, parent)
	err = s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		return storage.WalkInfo(ctx, func(ctx context.Context, i snapshots.Info) error {
			if !found && i.Kind == snapshots.KindCommitted && isRemote(i) &&
				i.Labels[labels.TargetSnapshotRef] == target && i.Parent == parent {
				info, found = i, true
			}
			return nil
		}, filter)
	})
	if errdefs.IsNotFound(err) { // a new, empty store
		err = nil
	}
	if err != nil {
		return snapshots.Info{}, false, fmt.Errorf("failed to look up chain ID %s: %w", target, err)
	}
	return info, found, nil
}

// mayReuse decides whether a Prepare for layer may be answered with the
// stored snapshot at its chain ID. The same blob (layer and TOC digest) is
// the same layer: yes. Another blob is a reason to prove the stored one
// first, not proof of forgery (the same tar compressed twice has one DiffID
// and two digests), so the caller waits for the proof, bounded by
// proofWait: proven, yes; forged, no (the incident is handled by the proof,
// and the caller mounts its own blob); no outcome in time, a clear error.
func (s *Snapshotter) mayReuse(ctx context.Context, stored snapshots.Info, want layer.Layer) (bool, error) {
	have, err := labels.ParseLayer(stored.Labels)
	if err != nil {
		return false, fmt.Errorf("stored snapshot %s: %w", stored.Name, err)
	}
	if have.LayerDigest == want.LayerDigest && have.TOCDigest == want.TOCDigest {
		return true, nil
	}
	if p, ok := recordedProof(stored); ok {
		return !p.forged, nil
	}
	log.G(ctx).WithFields(log.Fields{
		"stored_layer_digest": have.LayerDigest,
		"stored_image_ref":    have.ImageRef,
	}).Warn("another blob at an existing chain ID: waiting for the stored layer's proof")

	call := s.prove(ctx, stored.Name, want.ImageRef)
	timer := time.NewTimer(s.proofWait)
	defer timer.Stop()
	select {
	case <-call.done:
	case <-timer.C:
		return false, fmt.Errorf("layer %s of %s claims chain ID %s, where layer %s of %s is stored and still being proven after %v (the proof goes on; retry the pull): %w",
			want.LayerDigest, want.ImageRef, stored.Labels[labels.TargetSnapshotRef], have.LayerDigest, have.ImageRef, s.proofWait, errdefs.ErrUnavailable)
	case <-ctx.Done():
		return false, fmt.Errorf("waiting for the proof of layer %s: %w", have.LayerDigest, ctx.Err())
	}
	if call.res.err != nil {
		return false, fmt.Errorf("layer %s of %s claims chain ID %s, where another blob is stored that could not be proven: %w",
			want.LayerDigest, want.ImageRef, stored.Labels[labels.TargetSnapshotRef], call.res.err)
	}
	return !call.res.forged, nil
}

// commitRemote commits the active snapshot key of a lazy mount under the
// chain ID target, or, when that name is taken by a snapshot found forged
// (or one on another parent), under a second name carrying the same ref
// label: containerd finds it by that label and the parent, never by name.
// It returns an error wrapping ErrAlreadyExists when another Prepare
// committed the chain ID on the same parent meanwhile.
func (s *Snapshotter) commitRemote(ctx context.Context, key, target, id string, opts []snapshots.Opt) (name string, err error) {
	commitOpts := append(opts[:len(opts):len(opts)], snapshots.WithLabels(map[string]string{labels.Remote: "lazyfs"}))
	commit := func(name string) error {
		return s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
			// The usage of a lazily loaded layer is what it has cached, not a
			// walk of its FUSE tree (that would download the whole layer).
			_, err := storage.CommitActive(ctx, key, name, snapshots.Usage{}, commitOpts...)
			return err
		})
	}
	name = target
	err = commit(name)
	if !errdefs.IsAlreadyExists(err) {
		return name, err
	}
	var parent string
	if err := s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		_, info, _, err := storage.GetInfo(ctx, key)
		parent = info.Parent
		return err
	}); err != nil {
		return name, err
	}
	other, found, err := s.findRemote(ctx, target, parent)
	if err != nil {
		return name, err
	}
	if found {
		// Another pull of the chain ID won the race. Its snapshot is
		// this layer only if it is the same blob; another blob must be
		// proven first, which a retried Prepare does.
		var base snapshots.Info
		for _, opt := range opts {
			if err := opt(&base); err != nil {
				return name, err
			}
		}
		if other.Labels[labels.LayerDigest] == base.Labels[labels.LayerDigest] && other.Labels[labels.TOCDigest] == base.Labels[labels.TOCDigest] {
			return name, fmt.Errorf("snapshot %s: %w", target, errdefs.ErrAlreadyExists)
		}
		return name, fmt.Errorf("chain ID %s was just mounted from another blob, %s; retry to have it proven: %w",
			target, other.Labels[labels.LayerDigest], errdefs.ErrUnavailable)
	}
	name = target + "@" + id
	return name, commit(name)
}
