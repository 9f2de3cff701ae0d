package lazyfs

import (
	"sync"
	"sync/atomic"
)

// accessLog records the order in which a mount's regular files are first
// opened: what `snapshotterctl image optimize` turns into an image's
// prioritized files. Every open of a file through the mount reaches the
// worker as a FUSE OPEN (the kernel caches data, never opens), so the
// first OPEN of each NodeId is the first access of that file.
//
// The hot path is one atomic load per OPEN once a file was seen: a bit per
// NodeId, set with compare-and-swap, and the NodeId appended under a lock
// only the first time. Its size is bounded by the tree (one bit per node,
// one entry per file), whatever the workload.
type accessLog struct {
	seen []atomic.Uint64

	mu    sync.Mutex
	order []uint32
}

func newAccessLog(nodes int) *accessLog {
	return &accessLog{seen: make([]atomic.Uint64, (nodes+64)/64)}
}

// record notes an open of id; only the first one counts.
func (l *accessLog) record(id uint64) {
	word, bit := id/64, uint64(1)<<(id%64)
	if word >= uint64(len(l.seen)) {
		return // not a node of the tree: Open refused it already
	}
	w := &l.seen[word]
	for {
		old := w.Load()
		if old&bit != 0 {
			return
		}
		if w.CompareAndSwap(old, old|bit) {
			break
		}
	}
	l.mu.Lock()
	l.order = append(l.order, uint32(id))
	l.mu.Unlock()
}

func (l *accessLog) ids() []uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]uint32(nil), l.order...)
}

// Accesses returns the paths (relative to the layer's root, no leading
// "/") of the regular files opened through fs, in the order of their first
// open since NewFS or the last ResetAccesses. A file with several names
// (hard links) is reported under the first name in tree order. A worker that
// takes a mount over starts a new record.
func (fs *FS) Accesses() []string {
	ids := fs.accesses.Load().ids()
	paths := fs.tree.paths(ids)
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if p, ok := paths[id]; ok {
			out = append(out, p)
		}
	}
	return out
}

// ResetAccesses starts a new record: files opened before are recorded
// again at their next open.
func (fs *FS) ResetAccesses() {
	fs.accesses.Store(newAccessLog(fs.tree.Len() + 1))
}

// paths returns the path of each of ids that is linked in the tree, in one
// walk over it (Tree.path scans the tree per id).
func (t *Tree) paths(ids []uint32) map[uint32]string {
	want := make(map[uint32]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	out := make(map[uint32]string, len(ids))
	if len(want) == 0 {
		return out // no walk over the tree for nothing
	}
	var walk func(dirID uint32, dir string)
	walk = func(dirID uint32, dir string) {
		for _, e := range t.children(&t.nodes[dirID]) {
			p := joinPath(dir, t.name(e))
			if want[e.id] {
				if _, done := out[e.id]; !done {
					out[e.id] = p
				}
			}
			if n := &t.nodes[e.id]; n.isDir() && e.id != dirID {
				walk(e.id, p)
			}
		}
	}
	walk(rootID, "")
	return out
}
