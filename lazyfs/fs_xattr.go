package lazyfs

import (
	"slices"
	"strings"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// GetXAttr returns one extended attribute. trusted.overlay.opaque is
// answered for opaque directories; no other trusted.* attribute exists.
func (fs *FS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	defer opGetxattr.observe(time.Now())
	n := fs.tree.node(h.NodeId)
	if n == nil {
		return 0, fuse.ENOENT
	}
	var value string
	if attr == opaqueXattr {
		if !fs.tree.isOpaque(h.NodeId) {
			return 0, fuse.ENOATTR
		}
		value = opaqueValue
	} else {
		set := fs.tree.nodeXattrs(n)
		i, found := slices.BinarySearchFunc(set, attr, func(x xattr, name string) int { return strings.Compare(x.name, name) })
		if !found {
			return 0, fuse.ENOATTR
		}
		value = string(set[i].value)
	}
	// An empty dest asks for the size; go-fuse turns ERANGE into that
	// answer.
	if len(dest) < len(value) {
		return uint32(len(value)), fuse.ERANGE
	}
	return uint32(copy(dest, value)), fuse.OK
}

// ListXAttr lists the names of a node's extended attributes, each
// NUL-terminated.
func (fs *FS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	defer opListxattr.observe(time.Now())
	n := fs.tree.node(h.NodeId)
	if n == nil {
		return 0, fuse.ENOENT
	}
	set := fs.tree.nodeXattrs(n)
	opaque := n.isDir() && fs.tree.isOpaque(h.NodeId)
	size := 0
	for _, x := range set {
		size += len(x.name) + 1
	}
	if opaque {
		size += len(opaqueXattr) + 1
	}
	if len(dest) < size {
		return uint32(size), fuse.ERANGE
	}
	w := 0
	for _, x := range set {
		w += copy(dest[w:], x.name)
		dest[w] = 0
		w++
	}
	if opaque {
		w += copy(dest[w:], opaqueXattr)
		dest[w] = 0
		w++
	}
	return uint32(w), fuse.OK
}
