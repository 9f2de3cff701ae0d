package snapshot

import "path/filepath"

const (
	snapshotsDir = "snapshots"
	// tempPrefix names directories under construction; Cleanup removes them.
	tempPrefix = "new-"
)

func (s *Snapshotter) snapshotPath(id string) string {
	return filepath.Join(s.root, snapshotsDir, id)
}

func (s *Snapshotter) upperPath(id string) string {
	return filepath.Join(s.root, snapshotsDir, id, "fs")
}

func (s *Snapshotter) workPath(id string) string {
	return filepath.Join(s.root, snapshotsDir, id, "work")
}
