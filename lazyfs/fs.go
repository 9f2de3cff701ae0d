package lazyfs

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lazyfs/lazyfs/chunks"
)

const (
	// cacheTimeout is how long the kernel may trust entries, negative
	// entries and attributes: a layer never changes, so only memory
	// pressure should make the kernel ask again.
	cacheTimeout = time.Hour
	// generation is the same for every node: NodeIds are never reused
	// for a different file within a mount.
	generation = 1
	// blockSize is the preferred I/O size reported by stat and statfs.
	blockSize = 4096
	// maxNameLen is NAME_MAX, reported by statfs.
	maxNameLen = 255
)

// FileReader supplies the contents of regular files.
type FileReader interface {
	// ReadAt fills p with the file's decompressed bytes at off, reading the given chunks
	// (the file's whole chunk list, sorted by Offset). Returns verified bytes only.
	ReadAt(ctx context.Context, file []chunks.Chunk, p []byte, off int64) (int, error)
}

// FS serves a Tree read-only through go-fuse's raw API. It keeps no state
// per kernel object: NodeIds, file handles and directory offsets are all
// derived from the Tree, so any FS built from the same TOC can answer a
// request another one received. Operations it does not list answer ENOSYS
// through the embedded default; writes answer EROFS.
type FS struct {
	fuse.RawFileSystem
	ctx    context.Context
	tree   *Tree
	reader FileReader
	// accesses records the first open of each file (record.go); swapped
	// whole by ResetAccesses.
	accesses atomic.Pointer[accessLog]
	// quarantined is set when the layer was found forged (quarantine.go).
	quarantined atomic.Bool
}

var _ fuse.RawFileSystem = (*FS)(nil)

// NewFS returns the filesystem for tree. ctx is the root of every
// operation's context: cancelling it cancels reads in flight, and its logger
// should carry the layer's identity (layer_digest, image_ref, mountpoint),
// which every log line of the filesystem then names.
func NewFS(ctx context.Context, tree *Tree, reader FileReader) *FS {
	fs := &FS{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		ctx:           ctx,
		tree:          tree,
		reader:        reader,
	}
	fs.ResetAccesses()
	return fs
}

// String names the filesystem in go-fuse's debug output.
func (fs *FS) String() string { return "lazyfs" }

// fillEntry answers a LOOKUP (or a READDIRPLUS entry) for node id.
func (fs *FS) fillEntry(id uint64, n *node, out *fuse.EntryOut) {
	out.NodeId = id
	out.Generation = generation
	out.SetEntryTimeout(cacheTimeout)
	out.SetAttrTimeout(cacheTimeout)
	fs.tree.fillAttr(id, n, &out.Attr)
}
