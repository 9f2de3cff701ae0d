package failover

import (
	"encoding/binary"
	"fmt"

	"github.com/containerd/errdefs"
)

// Wire layout of the FUSE INIT request (include/uapi/linux/fuse.h).
const (
	inHeaderSize = 40 // struct fuse_in_header
	opcodeOffset = 4  // fuse_in_header.opcode
	initFlags    = inHeaderSize + 12
	initFlags2   = inHeaderSize + 16
	opInit       = 26 // FUSE_INIT

	// capInitExt says that fuse_init_in.flags2 holds the upper 32 bits
	// of the kernel's capabilities.
	capInitExt = 1 << 30
	// capHasResend is FUSE_HAS_RESEND (Linux 6.9): the kernel accepts
	// FUSE_NOTIFY_RESEND.
	capHasResend = 1 << 39
)

// InitState is the FUSE INIT exchange of a connection, byte for byte. The
// kernel sends INIT once per mount and never says again what was
// negotiated, so whoever keeps the connection alive (the supervisor, and
// workers.db across its restarts) keeps this too and hands it to the
// successor that takes the connection over. The successor replays Request
// and must compute exactly Reply (FAILOVER.md rule 3).
type InitState struct {
	// Request is the INIT request as read from /dev/fuse:
	// fuse_in_header followed by fuse_init_in.
	Request []byte `json:"request"`
	// Reply is the reply written back: fuse_out_header followed by
	// fuse_init_out.
	Reply []byte `json:"reply"`
}

// IsZero reports whether no INIT was recorded (the connection was never
// answered, or its state was lost).
func (s InitState) IsZero() bool { return len(s.Request) == 0 && len(s.Reply) == 0 }

// Check validates the shape of the saved request: long enough to hold the
// first flags word (kernels before 5.17 send no second one), and an INIT.
func (s InitState) Check() error {
	if len(s.Request) < initFlags+4 {
		return fmt.Errorf("saved INIT request is %d bytes: %w", len(s.Request), errdefs.ErrInvalidArgument)
	}
	if op := binary.NativeEndian.Uint32(s.Request[opcodeOffset:]); op != opInit {
		return fmt.Errorf("saved INIT request has opcode %d: %w", op, errdefs.ErrInvalidArgument)
	}
	return nil
}

// KernelFlags returns the capabilities the kernel offered in INIT (the
// CAP_* bits of go-fuse's fuse package).
func (s InitState) KernelFlags() (uint64, error) {
	if err := s.Check(); err != nil {
		return 0, err
	}
	flags := uint64(binary.NativeEndian.Uint32(s.Request[initFlags:]))
	if flags&capInitExt != 0 && len(s.Request) >= initFlags2+4 {
		flags |= uint64(binary.NativeEndian.Uint32(s.Request[initFlags2:])) << 32
	}
	return flags, nil
}

// KernelProtocol returns the FUSE protocol version the kernel offered in
// INIT (fuse_init_in.major and .minor), e.g. 7.41: what an operator
// compares with the kernel's changelog when a feature is missing.
func (s InitState) KernelProtocol() (major, minor uint32, err error) {
	if err := s.Check(); err != nil {
		return 0, 0, err
	}
	return binary.NativeEndian.Uint32(s.Request[inHeaderSize:]), binary.NativeEndian.Uint32(s.Request[inHeaderSize+4:]), nil
}

// SupportsResend reports whether the kernel offered FUSE_NOTIFY_RESEND
// (Linux 6.9 and later). Without it, requests a dead server read but did not
// answer are never answered: their callers hang until the kernel's request
// timeout, if one is set.
func (s InitState) SupportsResend() bool {
	flags, err := s.KernelFlags()
	return err == nil && flags&capHasResend != 0
}
