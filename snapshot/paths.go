package snapshot

import "github.com/lazyfs/lazyfs/layout"

// tempPrefix names directories under construction; Cleanup removes them.
const tempPrefix = "new-"

func (s *Snapshotter) snapshotsPath() string { return layout.Root(s.root).Snapshots() }

func (s *Snapshotter) snapshotPath(id string) string { return layout.Root(s.root).Snapshot(id) }

func (s *Snapshotter) upperPath(id string) string { return layout.Root(s.root).SnapshotFS(id) }

func (s *Snapshotter) workPath(id string) string { return layout.Root(s.root).SnapshotWork(id) }
