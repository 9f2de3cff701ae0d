package lazyfs

import (
	"slices"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lazyfs/lazyfs/chunks"
)

// rootID is the NodeId FUSE reserves for the root directory.
const rootID = fuse.FUSE_ROOT_ID

// dirSize is what stat(2) reports as a directory's size, as ext4 does for a
// small directory: the TOC has no size for directories.
const dirSize = 4096

// Tree is a layer's directory tree as overlayfs must see it in a lower
// layer, indexed by NodeId. It is immutable after NewTree and safe for
// concurrent use.
//
// It is laid out for a small, pointer-poor heap (a 300,000-entry layer must
// fit a worker of 200 MiB): nodes and directory entries live in flat slices
// indexed by NodeId, base names in one string, and only the chunk lists,
// symlink targets and xattrs hold pointers (to the TOC's own strings).
type Tree struct {
	nodes   []node   // by NodeId; nodes[0] is unused
	dirents []dirent // every directory's entries, grouped by directory, sorted by name
	names   string   // the base names the dirents point into
	chunks  []chunks.Chunk
	links   []string  // symlink targets
	xattrs  [][]xattr // xattr sets, each sorted by name
	opaque  []uint32  // NodeIds of opaque directories, sorted
	// dataBytes is the sum of regular file sizes, for STATFS.
	dataBytes uint64
}

// node is one inode. The meaning of first and count depends on the type.
type node struct {
	size  int64
	mtime int64
	nsec  uint32
	mode  uint32 // file type and permission bits, as in stat(2)
	uid   uint32
	gid   uint32
	nlink uint32
	// parent is a directory's parent (the root is its own parent).
	parent uint32
	// first is a directory's first dirent, a regular file's first chunk, a
	// symlink's index in links, or a device's rdev.
	first uint32
	// count is the number of dirents of a directory or chunks of a file.
	count uint32
	// xattrs is 1 + the index of the node's set in Tree.xattrs, 0 for none.
	xattrs uint32
}

// dirent is a name in a directory. Hard links are dirents sharing an id.
type dirent struct {
	nameOff uint32
	nameLen uint32
	id      uint32
}

// xattr is an extended attribute stored in the layer.
type xattr struct {
	name  string
	value []byte
}

// Len returns the number of nodes (inodes) in the tree: NodeIds run from 1
// to Len.
func (t *Tree) Len() int { return len(t.nodes) - 1 }

// node returns the node with the given NodeId, or nil if there is none.
func (t *Tree) node(id uint64) *node {
	if id == 0 || id >= uint64(len(t.nodes)) {
		return nil
	}
	return &t.nodes[id]
}

func (n *node) isDir() bool     { return n.mode&syscall.S_IFMT == syscall.S_IFDIR }
func (n *node) isRegular() bool { return n.mode&syscall.S_IFMT == syscall.S_IFREG }
func (n *node) isSymlink() bool { return n.mode&syscall.S_IFMT == syscall.S_IFLNK }
func (n *node) isDevice() bool {
	t := n.mode & syscall.S_IFMT
	return t == syscall.S_IFCHR || t == syscall.S_IFBLK
}

// name returns a dirent's base name without allocating.
func (t *Tree) name(d dirent) string {
	return t.names[d.nameOff : d.nameOff+d.nameLen]
}

// children returns a directory's entries, sorted by name.
func (t *Tree) children(n *node) []dirent {
	if !n.isDir() {
		return nil
	}
	return t.dirents[n.first : n.first+n.count]
}

// lookup finds name in directory n.
func (t *Tree) lookup(n *node, name string) (uint32, bool) {
	kids := t.children(n)
	i, found := slices.BinarySearchFunc(kids, name, func(d dirent, name string) int {
		return strings.Compare(t.name(d), name)
	})
	if !found {
		return 0, false
	}
	return kids[i].id, true
}

// fileChunks returns a regular file's chunks sorted by Offset; they cover
// the file exactly. An empty file has none.
func (t *Tree) fileChunks(n *node) []chunks.Chunk {
	if !n.isRegular() {
		return nil
	}
	return t.chunks[n.first : n.first+n.count]
}

// linkTarget returns a symlink's target.
func (t *Tree) linkTarget(n *node) (string, bool) {
	if !n.isSymlink() {
		return "", false
	}
	return t.links[n.first], true
}

// nodeXattrs returns the xattrs stored for a node, sorted by name.
func (t *Tree) nodeXattrs(n *node) []xattr {
	if n.xattrs == 0 {
		return nil
	}
	return t.xattrs[n.xattrs-1]
}

// isOpaque reports whether directory id hides lower layers' contents.
func (t *Tree) isOpaque(id uint64) bool {
	i := uint32(id)
	if uint64(i) != id {
		return false // past 32 bits: no node
	}
	_, found := slices.BinarySearch(t.opaque, i)
	return found
}

// fillAttr describes node id as stat(2) will show it.
func (t *Tree) fillAttr(id uint64, n *node, a *fuse.Attr) {
	*a = fuse.Attr{
		Ino:       id,
		Size:      uint64(n.size),
		Atime:     uint64(n.mtime),
		Mtime:     uint64(n.mtime),
		Ctime:     uint64(n.mtime),
		Atimensec: n.nsec,
		Mtimensec: n.nsec,
		Ctimensec: n.nsec,
		Mode:      n.mode,
		Nlink:     n.nlink,
		Owner:     fuse.Owner{Uid: n.uid, Gid: n.gid},
		Blksize:   blockSize,
	}
	if n.isRegular() || n.isDir() {
		a.Blocks = (uint64(n.size) + 511) / 512
	}
	if n.isDevice() {
		a.Rdev = n.first
	}
}

// path returns the path of node id for log messages ("" for the root, "?"
// if it is not linked anywhere). It scans the whole tree: keep it off the
// hot paths.
func (t *Tree) path(id uint32) string {
	if id == rootID {
		return ""
	}
	for dirID := range t.nodes {
		d := &t.nodes[dirID]
		if dirID == 0 || !d.isDir() {
			continue
		}
		for _, e := range t.children(d) {
			if e.id != id {
				continue
			}
			return joinPath(t.path(uint32(dirID)), t.name(e))
		}
	}
	return "?"
}
