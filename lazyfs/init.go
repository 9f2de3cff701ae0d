package lazyfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/failover"
)

// Wire layout of the FUSE messages this package reads or writes itself.
const (
	inHeaderSize  = 40 // struct fuse_in_header
	outHeaderSize = 16 // struct fuse_out_header
	initInSize    = 64 // struct fuse_init_in (protocol 7.36 and later)
	opcodeOffset  = 4  // fuse_in_header.opcode

	opInit       = 26 // FUSE_INIT
	notifyResend = 7  // FUSE_NOTIFY_RESEND, sent in fuse_out_header.error

	// resendBit marks, in fuse_in_header.unique, a request the kernel
	// queued again after FUSE_NOTIFY_RESEND.
	resendBit = 1 << 63
)

// replayInit feeds a saved INIT request to ps, so that it negotiates what
// the connection's first server negotiated, and refuses the takeover unless
// its reply is byte-identical to the saved one: a different go-fuse version
// or mount options could otherwise serve the kernel with settings (page
// counts, flags) it never agreed to.
func replayInit(ps *fuse.ProtocolServer, s failover.InitState, outSize int) error {
	if err := s.Check(); err != nil {
		return err
	}
	out := make([]byte, outSize)
	n, status := ps.HandleRequest([][]byte{slices.Clone(s.Request)}, [][]byte{out})
	if !status.Ok() {
		return fmt.Errorf("takeover refused: replaying INIT failed with %v: %w", status, errdefs.ErrFailedPrecondition)
	}
	if !bytes.Equal(out[:n], s.Reply) {
		return fmt.Errorf("takeover refused: this server's INIT reply differs from the one the kernel received: %w", errdefs.ErrFailedPrecondition)
	}
	return nil
}

// NotifyResend asks the kernel to queue again every request that was read
// from the connection but not answered, with bit 63 set in their unique
// (FUSE_NOTIFY_RESEND, Linux 6.9 and later). A successor sends it before its
// first read, or it would process the requests it already read twice.
func NotifyResend(fd int) error {
	var hdr [outHeaderSize]byte
	binary.NativeEndian.PutUint32(hdr[0:], outHeaderSize)
	binary.NativeEndian.PutUint32(hdr[4:], notifyResend)
	// unique stays 0: this is a notification, not a reply.
	for {
		_, err := unix.Write(fd, hdr[:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("failed to send FUSE_NOTIFY_RESEND: %w", err)
		}
		return nil
	}
}
