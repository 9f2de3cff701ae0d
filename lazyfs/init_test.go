package lazyfs

import (
	"context"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/failover"
)

// syntheticInit builds an INIT request as a 6.18 kernel sends it.
func syntheticInit(flags uint64) []byte {
	req := make([]byte, inHeaderSize+initInSize)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint32(req[opcodeOffset:], opInit)
	binary.NativeEndian.PutUint64(req[8:], 2) // unique
	binary.NativeEndian.PutUint32(req[inHeaderSize:], 7)
	binary.NativeEndian.PutUint32(req[inHeaderSize+4:], 45)
	binary.NativeEndian.PutUint32(req[inHeaderSize+8:], 128<<10)
	binary.NativeEndian.PutUint32(req[inHeaderSize+12:], uint32(flags))
	binary.NativeEndian.PutUint32(req[inHeaderSize+16:], uint32(flags>>32))
	return req
}

// initReply computes the reply a fresh server gives req.
func initReply(t *testing.T, req []byte) []byte {
	t.Helper()
	ps := fuse.NewProtocolServer(NewFS(context.Background(), &Tree{nodes: make([]node, 2)}, nil), mountOptions(context.Background(), false, connSize{maxWrite: maxWrite, maxReadAhead: maxReadAhead}))
	out := make([]byte, connSize{maxWrite: maxWrite}.outBufSize())
	n, status := ps.HandleRequest([][]byte{slices.Clone(req)}, [][]byte{out})
	if !status.Ok() {
		t.Fatal(status)
	}
	return out[:n]
}

func TestInitReplyIsDeterministic(t *testing.T) {
	req := syntheticInit(fuse.CAP_ASYNC_READ | fuse.CAP_BIG_WRITES | fuse.CAP_READDIRPLUS | fuse.CAP_MAX_PAGES |
		fuse.CAP_PASSTHROUGH | fuse.CAP_INIT_EXT | fuse.CAP_HAS_RESEND | fuse.CAP_CACHE_SYMLINKS)
	a, b := initReply(t, req), initReply(t, req)
	if !slices.Equal(a, b) {
		t.Fatal("two servers answer the same INIT differently")
	}
	// fuse_init_out: flags at 12, max_write at 20, flags2 at 32.
	flags := uint64(binary.NativeEndian.Uint32(a[outHeaderSize+12:])) | uint64(binary.NativeEndian.Uint32(a[outHeaderSize+32:]))<<32
	if flags&fuse.CAP_PASSTHROUGH != 0 {
		t.Error("passthrough negotiated")
	}
	if flags&fuse.CAP_CACHE_SYMLINKS == 0 {
		t.Error("symlink caching not negotiated")
	}
	if mw := binary.NativeEndian.Uint32(a[outHeaderSize+20:]); mw != maxWrite {
		t.Errorf("max_write %d, want %d", mw, maxWrite)
	}
}

func TestServeRefusesMismatchedResume(t *testing.T) {
	req := syntheticInit(fuse.CAP_INIT_EXT | fuse.CAP_ASYNC_READ)
	reply := initReply(t, req)
	fs := NewFS(context.Background(), &Tree{nodes: make([]node, 2)}, nil)
	// A reply this server would not give is another build's connection
	// (failed precondition); a saved request that is no INIT is broken
	// state, refused before it reaches go-fuse (invalid argument).
	for _, tc := range []struct {
		name  string
		state failover.InitState
		class func(error) bool
	}{
		{"other reply", failover.InitState{Request: req, Reply: append(slices.Clone(reply[:len(reply)-1]), reply[len(reply)-1]^1)}, errdefs.IsFailedPrecondition},
		{"truncated reply", failover.InitState{Request: req, Reply: reply[:len(reply)-8]}, errdefs.IsFailedPrecondition},
		{"not INIT", failover.InitState{Request: make([]byte, inHeaderSize+initInSize), Reply: reply}, errdefs.IsInvalidArgument},
		{"short request", failover.InitState{Request: req[:10], Reply: reply}, errdefs.IsInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// fd -1: a refused takeover must not touch the fd at all.
			err := Serve(context.Background(), -1, fs, ServeOptions{Resume: &tc.state})
			if !tc.class(err) {
				t.Fatalf("Serve: %v", err)
			}
		})
	}
}

// TestResumeCarriesOldConnectionsOver: a connection a worker of an earlier
// release initialised with 128 KiB requests is resumed with that size (its
// INIT replays byte for byte), although fresh connections get 1 MiB.
func TestResumeCarriesOldConnectionsOver(t *testing.T) {
	req := syntheticInit(fuse.CAP_ASYNC_READ | fuse.CAP_BIG_WRITES | fuse.CAP_MAX_PAGES | fuse.CAP_INIT_EXT | fuse.CAP_HAS_RESEND)
	fs := NewFS(context.Background(), &Tree{nodes: make([]node, 2)}, nil)
	old := connSize{maxWrite: oldMaxWrite, maxReadAhead: oldMaxWrite}
	out := make([]byte, old.outBufSize())
	n, status := fuse.NewProtocolServer(fs, mountOptions(context.Background(), false, old)).HandleRequest([][]byte{slices.Clone(req)}, [][]byte{out})
	if !status.Ok() {
		t.Fatal(status)
	}
	saved := failover.InitState{Request: req, Reply: out[:n]}

	size, err := resumedSize(saved)
	if err != nil {
		t.Fatalf("resumedSize: %v", err)
	}
	if size.maxWrite != oldMaxWrite {
		t.Errorf("resumed max_write %d, want %d", size.maxWrite, oldMaxWrite)
	}
	if err := replayInit(fuse.NewProtocolServer(fs, mountOptions(context.Background(), false, size)), saved, size.outBufSize()); err != nil {
		t.Errorf("replaying the old connection's INIT with its own size: %v", err)
	}
	// What the size taken from the reply is for: a fresh server's sizes
	// would refuse the takeover.
	fresh := connSize{maxWrite: maxWrite, maxReadAhead: maxReadAhead}
	if err := replayInit(fuse.NewProtocolServer(fs, mountOptions(context.Background(), false, fresh)), saved, fresh.outBufSize()); err == nil {
		t.Error("a fresh server's 1 MiB reply matched a 128 KiB connection's")
	}
	// Serve itself takes the size from the saved reply: the replay
	// passes, and only then does fd -1 fail (a refused takeover would
	// never touch it).
	if err := Serve(context.Background(), -1, fs, ServeOptions{Resume: &saved}); err == nil || errdefs.IsFailedPrecondition(err) {
		t.Errorf("Serve resuming a 128 KiB connection: %v; want the replay accepted", err)
	}
}

// TestResumedSizeBounds pins the max_write a saved reply may carry at its
// edges: a page up to 1 MiB (go-fuse's and the kernel's maximum).
func TestResumedSizeBounds(t *testing.T) {
	reply := initReply(t, syntheticInit(fuse.CAP_INIT_EXT|fuse.CAP_MAX_PAGES))
	page := unix.Getpagesize()
	for _, tc := range []struct {
		maxWrite int
		ok       bool
	}{{page - 1, false}, {page, true}, {maxWrite, true}, {maxWrite + 1, false}, {0, false}} {
		r := slices.Clone(reply)
		binary.NativeEndian.PutUint32(r[initOutMaxWrite:], uint32(tc.maxWrite))
		size, err := resumedSize(failover.InitState{Request: nil, Reply: r})
		switch {
		case tc.ok && (err != nil || size.maxWrite != tc.maxWrite):
			t.Errorf("max_write %d: %+v, %v; want it accepted", tc.maxWrite, size, err)
		case !tc.ok && !errdefs.IsFailedPrecondition(err):
			t.Errorf("max_write %d: %v; want a refused takeover", tc.maxWrite, err)
		}
	}
	if _, err := resumedSize(failover.InitState{Reply: reply[:initOutMaxWrite+3]}); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("reply without max_write: %v; want a refused takeover", err)
	}
	if _, err := resumedSize(failover.InitState{Reply: reply[:initOutMaxWrite+4]}); err != nil {
		t.Errorf("reply ending with max_write: %v; want it accepted", err)
	}
}

// TestReadSize: READ, READDIR and READDIRPLUS borrow a large reply buffer,
// sized by what they ask for; nothing else does.
func TestReadSize(t *testing.T) {
	req := make([]byte, readInSizeOffs+4)
	binary.NativeEndian.PutUint32(req[readInSizeOffs:], 1<<20)
	for _, tc := range []struct {
		op   uint32
		want int
	}{{opcodeRead, 1 << 20}, {opcodeReaddir, 1 << 20}, {opcodeReaddirplus, 1 << 20}, {opcodeRead + 1, 0}, {opInit, 0}} {
		binary.NativeEndian.PutUint32(req[opcodeOffset:], tc.op)
		if got := readSize(req); got != tc.want {
			t.Errorf("opcode %d: readSize %d, want %d", tc.op, got, tc.want)
		}
		if got := readSize(req[:len(req)-1]); got != 0 {
			t.Errorf("opcode %d, short: readSize %d, want 0", tc.op, got)
		}
	}
}
