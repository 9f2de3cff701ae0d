// Package snapshot is lazyfs's containerd snapshots.Snapshotter.
//
// Every snapshot is a directory snapshots/<id>/ under the root holding fs/
// (the layer's contents, or the mountpoint of its lazily loaded FUSE view) and,
// for active snapshots, work/ (overlayfs's workdir). Metadata lives in
// containerd's bbolt metastore (metadata.db): names, parents, kinds and labels,
// including containerd.io/snapshot.ref, by which containerd finds a committed
// snapshot again.
//
// Crash safety: a snapshot's directory is built under a temporary name and
// renamed to its id inside the metadata transaction that creates it, so a crash
// leaves at most a directory that no metadata names; Cleanup (and start-up)
// removes those.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/continuity/fs"
	"github.com/containerd/log"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/lazyfs/lazyfs/layout"
)

// metaStore is the part of containerd's storage.MetaStore this package uses.
type metaStore interface {
	WithTransaction(ctx context.Context, writable bool, fn storage.TransactionCallback) error
	Close() error
}

// Snapshotter implements snapshots.Snapshotter and snapshots.Cleaner.
type Snapshotter struct {
	root         string
	ms           metaStore
	mountOptions []string
	remote       RemoteLayers // nil: every layer is unpacked as usual
	cached       CachedLayers // nil: Usage of a remote snapshot is 0

	// Proofs of stored layers run in the background under ctx, which
	// Close cancels before it waits for them (wg).
	ctx       context.Context
	stop      context.CancelFunc
	wg        sync.WaitGroup
	proofs    proofs
	proofWait time.Duration

	labelHint labelHint // warns once about eStargz layers without labels
}

var (
	_ snapshots.Snapshotter = (*Snapshotter)(nil)
	_ snapshots.Cleaner     = (*Snapshotter)(nil)
)

// Opt configures a Snapshotter.
type Opt func(*options)

type options struct {
	dbTimeout time.Duration
	remote    RemoteLayers
	proofWait time.Duration
	cached    CachedLayers
}

// WithDBTimeout bounds how long New waits for the metadata database's file
// lock. bbolt's default of zero waits forever, which turns a second snapshotter
// started on the same root into a silent hang instead of an error.
func WithDBTimeout(d time.Duration) Opt {
	return func(o *options) { o.dbTimeout = d }
}

// New opens (or creates) a snapshotter rooted at root.
func New(ctx context.Context, root string, opts ...Opt) (_ *Snapshotter, err error) {
	o := options{dbTimeout: 10 * time.Second, proofWait: DefaultProofWait}
	for _, opt := range opts {
		opt(&o)
	}
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("snapshotter root %q must be an absolute path", root)
	}
	if err := os.MkdirAll(layout.Root(root).Snapshots(), 0o700); err != nil {
		return nil, fmt.Errorf("failed to create snapshotter root: %w", err)
	}
	ok, err := fs.SupportsDType(root)
	if err != nil {
		return nil, fmt.Errorf("failed to check d_type support of %s: %w", root, err)
	}
	if !ok {
		return nil, fmt.Errorf("%s does not support d_type, which overlayfs needs (xfs: reformat with ftype=1)", root)
	}

	dbPath := layout.Root(root).MetadataDB()
	ms, err := storage.NewMetaStore(dbPath, func(bo *bolt.Options) error {
		bo.Timeout = o.dbTimeout
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("failed to create metadata store %s: %w", dbPath, err)
	}
	defer func() {
		if err != nil {
			ms.Close()
		}
	}()
	// NewMetaStore opens the file lazily, on the first transaction: open it
	// now so that a locked or corrupt database fails start-up, not a pull.
	if err := ms.WithTransaction(ctx, false, func(context.Context) error { return nil }); err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("metadata store %s is locked by another process (is another lazyfs-snapshotter running on this root?): %w", dbPath, err)
		}
		return nil, fmt.Errorf("failed to open metadata store %s: %w", dbPath, err)
	}

	s := &Snapshotter{root: root, ms: ms, mountOptions: overlayOptions(), remote: o.remote, proofWait: o.proofWait,
		cached: o.cached}
	s.ctx, s.stop = context.WithCancel(context.WithoutCancel(ctx))
	s.proofs.running = map[string]*proofCall{}
	// No call is in flight yet, so every directory the metadata does not
	// name is a leftover of a crash between two steps.
	if err := s.Cleanup(ctx); err != nil {
		log.G(ctx).WithError(err).Warn("failed to clean up leftover snapshot directories")
	}
	return s, nil
}

// Root is the directory the snapshotter keeps its data in.
func (s *Snapshotter) Root() string { return s.root }

// Stat returns the info of an active or committed snapshot by key or name.
func (s *Snapshotter) Stat(ctx context.Context, key string) (info snapshots.Info, err error) {
	err = s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		_, info, _, err = storage.GetInfo(ctx, key)
		return err
	})
	return info, err
}

// Update updates the labels of a snapshot; fieldpaths select what changes.
func (s *Snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (newInfo snapshots.Info, err error) {
	err = s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		newInfo, err = storage.UpdateInfo(ctx, info, fieldpaths...)
		return err
	})
	return newInfo, err
}

// Usage returns the disk space a snapshot takes. Committed snapshots report
// what was measured at commit; active ones are measured now; remote ones
// report what the chunk cache holds of their layer (see WithCachedLayers).
func (s *Snapshotter) Usage(ctx context.Context, key string) (usage snapshots.Usage, err error) {
	var (
		id   string
		info snapshots.Info
	)
	if err := s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		id, info, usage, err = storage.GetInfo(ctx, key)
		return err
	}); err != nil {
		return snapshots.Usage{}, err
	}
	if info.Kind == snapshots.KindActive {
		du, err := fs.DiskUsage(ctx, s.upperPath(id))
		if err != nil {
			return snapshots.Usage{}, fmt.Errorf("failed to measure usage of snapshot %q: %w", key, err)
		}
		usage = snapshots.Usage(du)
	}
	return s.remoteUsage(info, usage), nil
}

// Walk calls fn for every snapshot matching the filters (containerd's
// filter syntax, e.g. labels."containerd.io/snapshot.ref"==sha256:...).
func (s *Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	return s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		return storage.WalkInfo(ctx, fn, filters...)
	})
}

// Close stops the proofs in flight and closes the metadata store. Calls
// still running when Close is called fail; the gRPC server is stopped
// before Close.
func (s *Snapshotter) Close() error {
	s.stop()
	s.wg.Wait()
	return s.ms.Close()
}
