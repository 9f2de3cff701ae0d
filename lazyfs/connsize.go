package lazyfs

import (
	"encoding/binary"
	"fmt"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/internal/mmapbuf"
)

// fuse_init_out fields read back from a saved INIT reply (after the
// fuse_out_header).
const (
	initOutMaxReadAhead = outHeaderSize + 8
	initOutMaxWrite     = outHeaderSize + 20
)

// connSize is the request size of one connection: what its INIT reply
// says, which every server of the connection must say again.
type connSize struct {
	maxWrite, maxReadAhead int
}

// resumedSize returns the size a connection was initialised with, from its
// saved INIT reply, so that a successor resumes connections of an older
// worker (128 KiB) as well as its own (1 MiB). A reply outside what go-fuse
// can answer (a page to 1 MiB) is refused: the replay could not reproduce
// it anyway, and the buffers are sized from it.
func resumedSize(s failover.InitState) (connSize, error) {
	if len(s.Reply) < initOutMaxWrite+4 {
		return connSize{}, fmt.Errorf("takeover refused: saved INIT reply is %d bytes: %w", len(s.Reply), errdefs.ErrFailedPrecondition)
	}
	c := connSize{
		maxWrite:     int(binary.NativeEndian.Uint32(s.Reply[initOutMaxWrite:])),
		maxReadAhead: int(binary.NativeEndian.Uint32(s.Reply[initOutMaxReadAhead:])),
	}
	if c.maxWrite < unix.Getpagesize() || c.maxWrite > maxWrite {
		return connSize{}, fmt.Errorf("takeover refused: saved INIT reply has max_write %d, not between a page and %d: %w", c.maxWrite, maxWrite, errdefs.ErrFailedPrecondition)
	}
	return c, nil
}

// inBufSize holds the largest request: a header, an op's input and
// max_write bytes of payload (the kernel refuses to read into less).
func (c connSize) inBufSize() int { return c.maxWrite + bufSlack }

// outBufSize holds the largest reply: a READ of max_write bytes or an
// xattr value or list of up to 64 KiB.
func (c connSize) outBufSize() int { return max(c.maxWrite, xattrReplyMax) + bufSlack }

// requestBuf is a reader's request or reply buffer, mapped outside the Go
// heap: the kernel and go-fuse touch only the bytes a request or reply
// uses, so the pages of a 1 MiB buffer that only ever holds LOOKUPs are
// never resident, and the buffers of every reader of every mount do not
// count towards the heap the GC paces itself by.
type requestBuf struct{ b []byte }

func newRequestBuf(size int) (requestBuf, error) {
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return requestBuf{}, fmt.Errorf("failed to map a FUSE buffer of %d bytes: %w", size, err)
	}
	return requestBuf{b: b}, nil
}

func (r requestBuf) free() { _ = unix.Munmap(r.b) }

// Requests whose reply may be as large as max_write; each says its size
// in a fuse_read_in.
const (
	opcodeRead        = 15                // FUSE_READ
	opcodeReaddir     = 28                // FUSE_READDIR
	opcodeReaddirplus = 44                // FUSE_READDIRPLUS
	readInSizeOffs    = inHeaderSize + 16 // fuse_read_in.size
)

// readSize returns the reply bytes a READ, READDIR or READDIRPLUS request
// allows, or 0 for any other request (or one too short to say). The
// kernel sizes directory reads by max_pages too, so they need as large a
// buffer as a READ.
func readSize(req []byte) int {
	if len(req) < readInSizeOffs+4 {
		return 0
	}
	switch binary.NativeEndian.Uint32(req[opcodeOffset:]) {
	case opcodeRead, opcodeReaddir, opcodeReaddirplus:
		return int(binary.NativeEndian.Uint32(req[readInSizeOffs:]))
	}
	return 0
}

// readReplies holds the reply buffers of large reads (readSize), shared by
// every reader of every connection: the memory they take follows the reads
// in flight, not the number of readers times mounts, and at most four stay
// (4 MiB) when reads stop.
var readReplies = mmapbuf.New(maxWrite+bufSlack, 4)
