package lazyfs

import (
	"context"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/hanwen/go-fuse/v2/fuse"

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
	ps := fuse.NewProtocolServer(NewFS(context.Background(), &Tree{nodes: make([]node, 2)}, nil), mountOptions(context.Background(), false))
	out := make([]byte, outBufSize)
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
