package lazyfs

import (
	"io"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/metrics"
)

// Open opens a regular file for reading. The handle is the NodeId, so that
// any worker can serve it; the kernel keeps its page cache across opens
// because the contents never change, and sends no FLUSH on close because
// there is nothing to flush (a close then never waits for a worker).
func (fs *FS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	defer opOpen.observe(time.Now())
	n := fs.tree.node(in.NodeId)
	switch {
	case n == nil:
		return fuse.ENOENT
	case n.isDir():
		return fuse.EISDIR
	case !n.isRegular():
		// Devices and FIFOs are opened by the kernel, never through FUSE.
		return fuse.EINVAL
	case in.Flags&unix.O_ACCMODE != unix.O_RDONLY, in.Flags&unix.O_TRUNC != 0:
		return fuse.EROFS
	}
	fs.accesses.Load().record(in.NodeId)
	out.Fh = in.NodeId
	out.OpenFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH
	return fuse.OK
}

// Read serves file contents from the FileReader. Anything short of the
// full, verified range (up to the end of the file) is an EIO: a short reply
// would make the kernel believe the file ends there.
//
// A READ the kernel interrupts (the reading thread got a signal) goes on:
// no local file system fails a read of a regular file with EINTR, and most
// programs do not retry one, so a shell's SIGCHLD or a timer arriving while
// a read waits for the registry would fail it. A fatal signal needs no
// answer: the kernel stops waiting for it. The read stays bounded by the
// registry's read deadline and ends when the worker stops.
func (fs *FS) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	defer opRead.observe(time.Now())
	n := fs.tree.node(in.NodeId)
	switch {
	case n == nil:
		return nil, fuse.ENOENT
	case n.isDir():
		return nil, fuse.EISDIR
	case !n.isRegular():
		return nil, fuse.EINVAL
	}
	if in.Offset >= uint64(n.size) {
		return fuse.ReadResultData(nil), fuse.OK
	}
	off := int64(in.Offset)
	p := buf[:min(int64(len(buf)), n.size-off)]

	ctx := fs.ctx
	// The chunk list is the tree's own: readers must not modify it.
	got, err := fs.reader.ReadAt(ctx, fs.tree.fileChunks(n), p, off)
	if err == nil && got != len(p) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, fs.readFailed(in, len(p), err)
	}
	served(len(p))
	return fuse.ReadResultData(p), fuse.OK
}

// readFailed turns a FileReader error into the reply, EIO, logged and
// counted.
func (fs *FS) readFailed(in *fuse.ReadIn, size int, err error) fuse.Status {
	opRead.failed()
	entry := log.G(fs.ctx).WithError(err).WithFields(log.Fields{
		"node":   in.NodeId,
		"path":   fs.tree.path(uint32(in.NodeId)),
		"offset": in.Offset,
		"size":   size,
	})
	if errdefs.IsUnavailable(err) {
		// The registry is down and the data in no cache: the reader
		// logged the outage once for the layer; every read is counted.
		metrics.UnavailableReads.Inc()
		entry.Debug("failed to read file contents")
		return fuse.EIO
	}
	entry.Error("failed to read file contents")
	return fuse.EIO
}

// Release closes a file handle: there is nothing to free.
func (fs *FS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	defer opRelease.observe(time.Now())
}

// Readlink returns a symlink's target.
func (fs *FS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	defer opReadlink.observe(time.Now())
	n := fs.tree.node(h.NodeId)
	if n == nil {
		return nil, fuse.ENOENT
	}
	target, ok := fs.tree.linkTarget(n)
	if !ok {
		return nil, fuse.EINVAL
	}
	return []byte(target), fuse.OK
}
