package main

import (
	"context"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/config"
	"github.com/lazyfs/lazyfs/labels"
	"github.com/lazyfs/lazyfs/toc"
)

const (
	// tocPruneInterval is how often the snapshotter removes the stored
	// TOCs no snapshot uses any more.
	tocPruneInterval = time.Minute
	// tocPruneGrace keeps a TOC stored this recently whatever the
	// snapshots say: a worker stores it while loading a layer, before the
	// snapshot that uses it is committed.
	tocPruneGrace = 10 * time.Minute
)

// walker lists snapshots (snapshot.Snapshotter does).
type walker interface {
	Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error
}

// startTOCPruner removes, every tocPruneInterval, the TOCs under
// <root>/tocs that no snapshot of sn names (its toc.digest label) until the
// returned stop is called.
func startTOCPruner(ctx context.Context, cfg config.Config, sn walker) (stop func(), err error) {
	store, err := toc.NewStore(filepath.Join(cfg.Root, "tocs"))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(tocPruneInterval)
		defer t.Stop()
		for {
			pruneTOCs(ctx, store, sn, time.Now().Add(-tocPruneGrace))
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}, nil
}

// pruneTOCs is one pass of startTOCPruner: TOCs written before cutoff that
// no snapshot names are removed.
func pruneTOCs(ctx context.Context, store *toc.Store, sn walker, cutoff time.Time) {
	used := map[digest.Digest]bool{}
	err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if d, err := digest.Parse(info.Labels[labels.TOCDigest]); err == nil {
			used[d] = true
		}
		return nil
	})
	if err != nil {
		// Without the full list, any TOC might be in use.
		log.G(ctx).WithError(err).Warn("failed to list snapshots; stored TOCs not pruned")
		return
	}
	n, err := store.Prune(func(d digest.Digest) bool { return used[d] }, cutoff)
	if err != nil {
		log.G(ctx).WithError(err).Warn("failed to prune stored TOCs")
	}
	if n > 0 {
		log.G(ctx).WithField("removed", n).Info("stored TOCs no snapshot uses removed")
	}
}
