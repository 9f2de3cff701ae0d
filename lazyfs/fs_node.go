package lazyfs

import (
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Lookup finds a name in a directory. A missing name is answered as a
// negative entry with the long timeout: overlayfs looks every name up in
// every lower layer, and the answer can never change.
func (fs *FS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	defer opLookup.observe(time.Now())
	dir := fs.tree.node(h.NodeId)
	switch {
	case dir == nil:
		return fuse.ENOENT
	case !dir.isDir():
		return fuse.ENOTDIR
	}
	id, ok := fs.tree.lookup(dir, name)
	if !ok {
		*out = fuse.EntryOut{}
		out.SetEntryTimeout(cacheTimeout)
		return fuse.OK
	}
	fs.fillEntry(uint64(id), fs.tree.node(uint64(id)), out)
	return fuse.OK
}

// GetAttr describes a node.
func (fs *FS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer opGetattr.observe(time.Now())
	n := fs.tree.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	fs.tree.fillAttr(in.NodeId, n, &out.Attr)
	out.SetTimeout(cacheTimeout)
	return fuse.OK
}

// Access answers access(2) and chdir(2) from the permission bits: the mount
// has no default_permissions, so the kernel asks. Writing is never allowed.
func (fs *FS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	defer opAccess.observe(time.Now())
	n := fs.tree.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	mask := in.Mask & (unix.R_OK | unix.W_OK | unix.X_OK)
	if mask&unix.W_OK != 0 {
		return fuse.EROFS
	}
	if !mayAccess(in.Caller, n, mask) {
		return fuse.EACCES
	}
	return fuse.OK
}

// StatFs reports the layer's size and inode count; nothing is free.
func (fs *FS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	defer opStatfs.observe(time.Now())
	*out = fuse.StatfsOut{
		Blocks:  (fs.tree.dataBytes + blockSize - 1) / blockSize,
		Files:   uint64(fs.tree.Len()),
		Bsize:   blockSize,
		Frsize:  blockSize,
		NameLen: maxNameLen,
	}
	return fuse.OK
}
