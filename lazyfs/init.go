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
)

// Wire layout of the FUSE messages this package reads or writes itself.
const (
	inHeaderSize  = 40 // struct fuse_in_header
	outHeaderSize = 16 // struct fuse_out_header
	initInSize    = 64 // struct fuse_init_in (protocol 7.36 and later)
	opcodeOffset  = 4  // fuse_in_header.opcode
	initFlags     = inHeaderSize + 12
	initFlags2    = inHeaderSize + 16

	opInit       = 26 // FUSE_INIT
	notifyResend = 7  // FUSE_NOTIFY_RESEND, sent in fuse_out_header.error
)

// InitState is the FUSE INIT exchange of a connection, byte for byte. The
// kernel sends INIT once per mount and never says again what was
// negotiated, so whoever keeps the connection alive (the supervisor) keeps
// this too and gives it to the successor that takes the connection over.
type InitState struct {
	// Request is the INIT request as read from /dev/fuse:
	// fuse_in_header followed by fuse_init_in.
	Request []byte
	// Reply is the reply written back: fuse_out_header followed by
	// fuse_init_out.
	Reply []byte
}

// KernelFlags returns the capabilities the kernel offered in INIT (the
// CAP_* bits of go-fuse's fuse package).
func (s InitState) KernelFlags() (uint64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	flags := uint64(binary.NativeEndian.Uint32(s.Request[initFlags:]))
	if flags&fuse.CAP_INIT_EXT != 0 && len(s.Request) >= initFlags2+4 {
		flags |= uint64(binary.NativeEndian.Uint32(s.Request[initFlags2:])) << 32
	}
	return flags, nil
}

// SupportsResend reports whether the kernel offered FUSE_NOTIFY_RESEND
// (Linux 6.9 and later): without it, requests a dead server read but did not
// answer are never answered, and their callers hang.
func (s InitState) SupportsResend() bool {
	flags, err := s.KernelFlags()
	return err == nil && flags&fuse.CAP_HAS_RESEND != 0
}

// check validates the shape of the saved request.
func (s InitState) check() error {
	if len(s.Request) < inHeaderSize+16 {
		return fmt.Errorf("saved INIT request is %d bytes: %w", len(s.Request), errdefs.ErrInvalidArgument)
	}
	if op := binary.NativeEndian.Uint32(s.Request[opcodeOffset:]); op != opInit {
		return fmt.Errorf("saved INIT request has opcode %d: %w", op, errdefs.ErrInvalidArgument)
	}
	return nil
}

// replayInit feeds a saved INIT request to ps, so that it negotiates what
// the connection's first server negotiated, and refuses the takeover unless
// its reply is byte-identical to the saved one: a different go-fuse version
// or mount options could otherwise serve the kernel with settings (page
// counts, flags) it never agreed to.
func replayInit(ps *fuse.ProtocolServer, s InitState, outSize int) error {
	if err := s.check(); err != nil {
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
