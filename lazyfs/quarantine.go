package lazyfs

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// A quarantined filesystem serves a layer found forged (issue 14, point 2):
// its blob does not have the DiffID its image claims. From then on every
// request that would hand out data or metadata is answered EIO, to every
// reader, whichever image's container asks: the server never serves another
// byte of it. The kernel may still hold some in its caches; InvalidateInode
// drops them, so that they are asked for, and refused, again.

// quarantiner is what Serve asks a filesystem whether it is quarantined.
type quarantiner interface{ Quarantined() bool }

// Quarantine refuses every later request for data or metadata with EIO.
// It cannot be undone: a forged layer stays forged.
func (fs *FS) Quarantine() { fs.quarantined.Store(true) }

// Quarantined reports whether Quarantine was called.
func (fs *FS) Quarantined() bool { return fs.quarantined.Load() }

// FUSE opcodes that a quarantined server still answers as usual: they hand
// out nothing and the kernel needs them to release what it holds (FORGET
// and BATCH_FORGET get no reply at all; INTERRUPT's reply is go-fuse's).
var quarantinePasses = map[uint32]bool{
	2:  true, // FORGET
	18: true, // RELEASE
	25: true, // FLUSH
	26: true, // INIT
	29: true, // RELEASEDIR
	36: true, // INTERRUPT
	38: true, // DESTROY
	42: true, // BATCH_FORGET
}

// refusedByQuarantine reports whether req must be answered EIO.
func (s *server) refusedByQuarantine(req []byte) bool {
	if s.q == nil || !s.q.Quarantined() || len(req) < 8 {
		return false
	}
	return !quarantinePasses[binary.NativeEndian.Uint32(req[4:])]
}

// notifyInvalInode is FUSE_NOTIFY_INVAL_INODE, sent in fuse_out_header.error.
const notifyInvalInode = 2

// InvalidateInode asks the kernel to drop its cached attributes and pages
// of node id on the connection fd (FUSE_NOTIFY_INVAL_INODE over the whole
// file), so that the next access asks the server. A node the kernel does
// not hold is not an error.
func InvalidateInode(fd int, id uint64) error {
	var msg [outHeaderSize + 24]byte
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint32(msg[4:], notifyInvalInode)
	// unique stays 0: a notification. Then struct fuse_notify_inval_inode_out:
	// ino, off = 0, len = -1 (to the end of the file).
	binary.NativeEndian.PutUint64(msg[16:], id)
	binary.NativeEndian.PutUint64(msg[32:], ^uint64(0))
	for {
		_, err := unix.Write(fd, msg[:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err == nil, errors.Is(err, unix.ENOENT):
			return nil
		default:
			return fmt.Errorf("failed to send FUSE_NOTIFY_INVAL_INODE for node %d: %w", id, err)
		}
	}
}

// InvalidateAll drops what the kernel caches of every node of fs on the
// connection fd (see InvalidateInode). It stops at the first failure other
// than a node the kernel does not hold.
func (fs *FS) InvalidateAll(fd int) error {
	for id := uint64(1); id <= uint64(fs.tree.Len()); id++ {
		if err := InvalidateInode(fd, id); err != nil {
			return err
		}
	}
	return nil
}
