package lazyfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/internal/fusetest"
	"github.com/lazyfs/lazyfs/internal/testreq"
)

// fuseOpRead is the opcode of FUSE_READ.
const fuseOpRead = 15

// recordingFS notes which READ requests reached it.
type recordingFS struct {
	*FS
	mu      sync.Mutex
	uniques map[uint64]bool
}

func (r *recordingFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	r.mu.Lock()
	r.uniques[in.Unique] = true
	r.mu.Unlock()
	return r.FS.Read(cancel, in, buf)
}

func (r *recordingFS) saw(unique uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.uniques[unique]
}

// stealRequest reads one request from fd and drops it, as a server killed
// right after reading it would.
func stealRequest(t *testing.T, fd int) []byte {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	deadline := time.Now().Add(testTimeout)
	buf := make([]byte, connSize{maxWrite: maxWrite}.inBufSize())
	for time.Now().Before(deadline) {
		if _, err := unix.Poll(fds, 100); err != nil && !errors.Is(err, unix.EINTR) {
			t.Fatal(err)
		}
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return slices.Clone(buf[:n])
	}
	t.Fatal("no request to steal")
	return nil
}

// reader reads a file through the mount with O_DIRECT preads at random
// offsets (so that each is a READ request) and checks every byte.
type reader struct {
	reads atomic.Int64
	stopF atomic.Bool
	done  chan struct{}
	mu    sync.Mutex
	err   error
}

func startReader(t *testing.T, path string, want []byte) *reader {
	r := &reader{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		fd, err := fusetest.Open(path, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
		if err != nil {
			r.fail(err)
			return
		}
		defer unix.Close(fd)
		rng := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 64<<10)
		for !r.stopF.Load() {
			off := rng.Int64N(int64(len(want)))
			size := 1 + rng.IntN(len(buf))
			n, err := fusetest.Pread(fd, buf[:size], off)
			if err != nil {
				r.fail(fmt.Errorf("pread(%d, %d): %w", off, size, err))
				return
			}
			end := min(off+int64(size), int64(len(want)))
			if !bytes.Equal(buf[:n], want[off:end]) {
				r.fail(fmt.Errorf("pread(%d, %d): wrong bytes", off, size))
				return
			}
			r.reads.Add(1)
		}
	}()
	return r
}

func (r *reader) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

// waitReads waits until the reader has done at least n reads.
func (r *reader) waitReads(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for r.reads.Load() < n {
		select {
		case <-r.done:
			t.Fatalf("reader stopped after %d reads: %v", r.reads.Load(), r.error())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("reader stuck at %d reads, want %d", r.reads.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *reader) error() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *reader) stop(t *testing.T) {
	t.Helper()
	r.stopF.Store(true)
	select {
	case <-r.done:
	case <-time.After(testTimeout):
		t.Fatal("reader did not stop")
	}
	if err := r.error(); err != nil {
		t.Fatal(err)
	}
}

func TestTakeoverWhileReading(t *testing.T) {
	testreq.RequireFUSE(t)
	entries := mainLayerEntries()
	layer := mainLayer(t, 0)
	tree := layer.tree(t)
	m := newMount(t, tree, &blobReader{blob: layer.blob})
	m.serve(ServeOptions{})
	var st failover.InitState
	select {
	case st = <-m.init:
	case <-time.After(testTimeout):
		t.Fatal("no INIT")
	}
	if len(st.Request) < inHeaderSize+16 || len(st.Reply) < outHeaderSize {
		t.Fatalf("INIT state of %d and %d bytes", len(st.Request), len(st.Reply))
	}

	// Two readers, so that requests are served concurrently.
	r := startReader(t, filepath.Join(m.dir, "bin/busybox"), entryData(t, entries, "bin/busybox"))
	t.Cleanup(func() { r.stopF.Store(true) })
	r2 := startReader(t, filepath.Join(m.dir, "deep/a/b/c/d.txt"), entryData(t, entries, "deep/a/b/c/d.txt"))
	t.Cleanup(func() { r2.stopF.Store(true) })
	r.waitReads(t, 20)
	r2.waitReads(t, 20)

	// The first server stops (its reader goroutines exit, the fd stays
	// open): the reader's requests wait in the kernel meanwhile.
	if err := m.stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped Serve returned %v, want context.Canceled", err)
	}
	before, before2 := r.reads.Load(), r2.reads.Load()

	// A successor built differently is refused before it touches the fd.
	bad := failover.InitState{Request: st.Request, Reply: slices.Clone(st.Reply)}
	bad.Reply[len(bad.Reply)-1] ^= 0xff
	if err := Serve(m.ctx, m.fd, m.fs, ServeOptions{Resume: &bad}); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("takeover with a different INIT reply: %v, want FailedPrecondition", err)
	}

	// A server that died after reading a request, before answering it.
	var stolen uint64
	if st.SupportsResend() {
		req := stealRequest(t, m.fd)
		stolen = binary.NativeEndian.Uint64(req[8:])
		if op := binary.NativeEndian.Uint32(req[opcodeOffset:]); op != fuseOpRead {
			t.Fatalf("stole opcode %d, want READ", op)
		}
	} else {
		t.Log("kernel lacks FUSE_NOTIFY_RESEND: not testing a request lost with its server")
	}

	rec := &recordingFS{FS: m.fs, uniques: map[uint64]bool{}}
	m.serveFS(rec, ServeOptions{Resume: &st, Readers: 3})

	r.waitReads(t, before+50)
	r2.waitReads(t, before2+50)
	r.stop(t)
	r2.stop(t)
	if stolen != 0 && !rec.saw(stolen|resendBit) {
		t.Errorf("the stolen request %#x was not resent to the successor", stolen)
	}
	t.Logf("%d verified reads, %d after the takeover", r.reads.Load(), r.reads.Load()-before)
	m.unmount()
}

// entryData returns the contents of a tar entry.
func entryData(t *testing.T, entries []tarEntry, name string) []byte {
	t.Helper()
	for _, e := range entries {
		if cleanPath(e.hdr.Name) == name {
			return e.data
		}
	}
	t.Fatalf("no %s in the layer", name)
	return nil
}

func TestRecoverUnansweredInit(t *testing.T) {
	testreq.RequireFUSE(t)
	entries := mainLayerEntries()
	layer := mainLayer(t, 0)
	m := newMount(t, layer.tree(t), &blobReader{blob: layer.blob})

	// The first server read INIT and died.
	lost := failover.InitState{Request: stealRequest(t, m.fd)}
	if err := lost.Check(); err != nil {
		t.Fatal(err)
	}
	// Without FUSE_NOTIFY_RESEND (Linux 6.9) an unanswered INIT cannot be
	// recovered: the kernel fact is reported, and fails the test unless
	// skips are allowed.
	testreq.RequireKernel(t, "FUSE_NOTIFY_RESEND", lost.SupportsResend())

	m.serve(ServeOptions{RecoverInit: true})
	var st failover.InitState
	select {
	case st = <-m.init:
	case <-time.After(testTimeout):
		t.Fatal("INIT was not resent")
	}
	if u := binary.NativeEndian.Uint64(st.Request[8:]); u&resendBit == 0 {
		t.Errorf("INIT unique %#x lacks the resend bit", u)
	}
	within(t, "read", func() {
		got, err := fusetest.ReadFile(filepath.Join(m.dir, "bin/su"))
		if err != nil || !bytes.Equal(got, entryData(t, entries, "bin/su")) {
			t.Errorf("bin/su: %q, %v", got, err)
		}
	})
	m.unmount()
}
