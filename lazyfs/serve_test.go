package lazyfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/containerd/log/logtest"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/metrics"
)

// fakeKernel is the kernel's end of a fakeDevFuse connection that Serve
// serves for the test's lifetime, past its INIT.
type fakeKernel struct {
	t     *testing.T
	fd    int
	reply []byte
}

func serveFake(t *testing.T, fs fuse.RawFileSystem) *fakeKernel {
	t.Helper()
	srv, kernel := fakeDevFuse(t)
	if err := unix.SetNonblock(kernel, false); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(logtest.WithT(context.Background(), t))
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, srv, fs, ServeOptions{}) }()
	t.Cleanup(func() {
		stop()
		within(t, "Serve to stop", func() { <-served })
	})
	k := &fakeKernel{t: t, fd: kernel, reply: make([]byte, 2<<20)} // larger than any reply
	k.send(syntheticInit(fuse.CAP_ASYNC_READ | fuse.CAP_MAX_PAGES | fuse.CAP_INIT_EXT))
	k.read() // INIT's
	return k
}

func (k *fakeKernel) send(req []byte) {
	k.t.Helper()
	if _, err := unix.Write(k.fd, req); err != nil {
		k.t.Fatal(err)
	}
}

// read returns the next reply.
func (k *fakeKernel) read() []byte {
	k.t.Helper()
	var n int
	within(k.t, "reply", func() {
		var err error
		for n, err = unix.Read(k.fd, k.reply); errors.Is(err, unix.EINTR); n, err = unix.Read(k.fd, k.reply) {
		}
		if err != nil {
			k.t.Fatal(err)
		}
	})
	return k.reply[:n]
}

// request builds a request of opcode for node id, with arg after the
// header.
func request(opcode uint32, unique, id uint64, arg []byte) []byte {
	req := make([]byte, inHeaderSize, inHeaderSize+len(arg))
	binary.NativeEndian.PutUint32(req[opcodeOffset:], opcode)
	binary.NativeEndian.PutUint64(req[8:], unique)
	binary.NativeEndian.PutUint64(req[16:], id)
	req = append(req, arg...)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	return req
}

// replyOf checks reply's header (its length, no error, unique) and returns
// its payload.
func replyOf(t *testing.T, reply []byte, unique uint64) []byte {
	t.Helper()
	if len(reply) < outHeaderSize || int(binary.NativeEndian.Uint32(reply)) != len(reply) ||
		binary.NativeEndian.Uint32(reply[4:]) != 0 || binary.NativeEndian.Uint64(reply[8:]) != unique {
		t.Fatalf("reply header %x (%d bytes), want success for unique %d", reply[:min(len(reply), outHeaderSize)], len(reply), unique)
	}
	return reply[outHeaderSize:]
}

// TestResentRequestsCounted: lazyfs_fuse_requests_resent_total counts the
// requests the kernel sent again (after a takeover), not the others.
func TestResentRequestsCounted(t *testing.T) {
	k := serveFake(t, NewFS(logtest.WithT(context.Background(), t), guardTree(t), fill))
	getattr := func(unique uint64) {
		k.send(request(3, unique, rootID, make([]byte, 16))) // FUSE_GETATTR, fuse_getattr_in
		replyOf(t, k.read(), unique)
	}
	before := counterValue(t, metrics.FuseRequestsResent)
	getattr(5)
	if got := counterValue(t, metrics.FuseRequestsResent) - before; got != 0 {
		t.Errorf("a first request counted as resent (%v)", got)
	}
	getattr(6 | resendBit)
	if got := counterValue(t, metrics.FuseRequestsResent) - before; got != 1 {
		t.Errorf("a resent request counted %v times, want 1", got)
	}
}

// TestLargestRepliesFit: the largest xattr value (64 KiB) and a READ past
// a reader's own reply buffer (64 KiB and a page) are answered whole, and
// so is a READ that just fits it.
func TestLargestRepliesFit(t *testing.T) {
	const fileSize = 1 << 20
	big := bytes.Repeat([]byte{'v'}, xattrReplyMax)
	f := &estargz.TOCEntry{Name: "f", Type: "reg", Size: fileSize, Offset: 10, Mode: 0o644, ChunkDigest: testDigest(1), Xattrs: map[string][]byte{"user.big": big}}
	tr := mustTree(t, []*estargz.TOCEntry{f}, 100)
	k := serveFake(t, NewFS(logtest.WithT(context.Background(), t), tr, fill))
	id := uint64(idOf(t, tr, "f"))

	// fuse_getxattr_in: size, padding; then the name.
	arg := binary.NativeEndian.AppendUint32(nil, xattrReplyMax)
	arg = append(binary.NativeEndian.AppendUint32(arg, 0), "user.big\x00"...)
	k.send(request(22, 7, id, arg)) // FUSE_GETXATTR
	if got := replyOf(t, k.read(), 7); !bytes.Equal(got, big) {
		t.Errorf("xattr of %d bytes answered with %d", len(big), len(got))
	}

	// (A socket pair takes no packet of 1 MiB.)
	for _, size := range []int{xattrReplyMax, xattrReplyMax + bufSlack} {
		// fuse_read_in: fh, offset, size, read_flags, lock_owner, flags, padding.
		arg := make([]byte, 40)
		binary.NativeEndian.PutUint32(arg[16:], uint32(size))
		k.send(request(fuseOpRead, 8, id, arg))
		if got := replyOf(t, k.read(), 8); len(got) != size || bytes.Count(got, []byte{'x'}) != size {
			t.Errorf("READ of %d bytes answered with %d", size, len(got))
		}
	}
}
