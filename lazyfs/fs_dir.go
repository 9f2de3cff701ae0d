package lazyfs

import (
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Directory stream offsets: "." is at 0, ".." at 1 and child i of the sorted
// list at i+2. An entry's Off is the offset of the entry after it. They
// depend on the TOC alone, so a successor continues a listing where its
// predecessor stopped.
const firstChildOffset = 2

// OpenDir opens a directory. The kernel may cache its listing for good:
// it never changes.
func (fs *FS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	defer opOpendir.observe(time.Now())
	n := fs.tree.node(in.NodeId)
	switch {
	case n == nil:
		return fuse.ENOENT
	case !n.isDir():
		return fuse.ENOTDIR
	}
	out.Fh = in.NodeId
	out.OpenFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_CACHE_DIR
	return fuse.OK
}

// ReadDir lists a directory from in.Offset on.
func (fs *FS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	defer opReaddir.observe(time.Now())
	return fs.readDir(in, out, false)
}

// ReadDirPlus lists a directory with each entry's attributes, sparing the
// kernel a LOOKUP per name.
func (fs *FS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	defer opReaddirplus.observe(time.Now())
	return fs.readDir(in, out, true)
}

func (fs *FS) readDir(in *fuse.ReadIn, out *fuse.DirEntryList, plus bool) fuse.Status {
	dir := fs.tree.node(in.NodeId)
	switch {
	case dir == nil:
		return fuse.ENOENT
	case !dir.isDir():
		return fuse.ENOTDIR
	}
	kids := fs.tree.children(dir)
	for pos := in.Offset; ; pos++ {
		var e fuse.DirEntry
		var child *node
		switch {
		case pos == 0:
			e = fuse.DirEntry{Name: ".", Ino: in.NodeId, Mode: syscall.S_IFDIR}
		case pos == 1:
			e = fuse.DirEntry{Name: "..", Ino: uint64(dir.parent), Mode: syscall.S_IFDIR}
		case pos-firstChildOffset < uint64(len(kids)):
			d := kids[pos-firstChildOffset]
			child = fs.tree.node(uint64(d.id))
			e = fuse.DirEntry{Name: fs.tree.name(d), Ino: uint64(d.id), Mode: child.mode}
		default:
			return fuse.OK
		}
		e.Off = pos + 1
		if !plus {
			if !out.AddDirEntry(e) {
				return fuse.OK
			}
			continue
		}
		entry := out.AddDirLookupEntry(e)
		if entry == nil {
			return fuse.OK
		}
		// "." and ".." stay zero: the kernel takes no lookup reference
		// for them.
		if child != nil {
			fs.fillEntry(e.Ino, child, entry)
		}
	}
}

// ReleaseDir closes a directory handle: there is nothing to free.
func (fs *FS) ReleaseDir(in *fuse.ReleaseIn) {
	defer opReleasedir.observe(time.Now())
}
