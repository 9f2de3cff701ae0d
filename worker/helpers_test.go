package worker_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/containerd/log/logtest"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/internal/fusetest"
	"github.com/lazyfs/lazyfs/internal/testregistry"
	"github.com/lazyfs/lazyfs/internal/testreq"
	"github.com/lazyfs/lazyfs/remote"
	"github.com/lazyfs/lazyfs/toc"
	"github.com/lazyfs/lazyfs/worker"
)

// testTimeout bounds every wait on the kernel or the worker, so that a bug
// shows as a failure instead of a hung test.
const testTimeout = 15 * time.Second

// within bounds fn, which touches a mount, by testTimeout.
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	fusetest.Within(t, testTimeout, what, fn)
}

// testContext logs to the test and bounds a call to the worker.
func testContext(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithTimeout(logtest.WithT(t.Context(), t), testTimeout)
}

// newWorker returns a worker keeping its TOCs under root, resolving refs
// with default options (127.0.0.1 is plain http). Cleanup closes it.
func newWorker(t *testing.T, root string, exitWhenIdle bool) *worker.Worker {
	t.Helper()
	return newWorkerIdle(t, root, exitWhenIdle, 0)
}

// newWorkerIdle is newWorker with an idle grace.
func newWorkerIdle(t *testing.T, root string, exitWhenIdle bool, idleTimeout time.Duration) *worker.Worker {
	t.Helper()
	ctx := logtest.WithT(context.Background(), t)
	w, err := worker.New(ctx, worker.Options{
		ID:      "test",
		Version: "test-version",
		Root:    root,
		// A read the registry cannot serve fails within the tests'
		// waits, not remote's default deadline of 30 s.
		Resolver:     remote.NewResolver(remote.Options{ReadTimeout: 3 * time.Second}),
		Limits:       toc.DefaultLimits(),
		FuseReaders:  2,
		ExitWhenIdle: exitWhenIdle,
		IdleTimeout:  idleTimeout,
		AttachWait:   testTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// fuseMount is a /dev/fuse connection mounted at dir. The test keeps its
// own fd for the mount's life, as the supervisor does, and gives the worker
// a copy.
type fuseMount struct {
	t   *testing.T
	dir string
	fd  int
}

// mountFuse opens /dev/fuse and mounts it at a fresh directory. Cleanup
// detaches the mount and closes the fd (aborting the connection first if
// the test failed, which releases any call still blocked on it).
func mountFuse(t *testing.T) *fuseMount {
	t.Helper()
	testreq.RequireFUSE(t)
	fd, err := failover.OpenFuse()
	if err != nil {
		t.Fatal(err)
	}
	m := &fuseMount{t: t, dir: t.TempDir(), fd: fd}
	if err := failover.Mount(fd, m.dir, "lazyfs-test", "lazyfs"); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	t.Cleanup(m.cleanup)
	return m
}

// dup returns a copy of the fd for the worker, which owns it once Attach
// succeeds.
func (m *fuseMount) dup() int {
	m.t.Helper()
	fd, err := unix.FcntlInt(uintptr(m.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		m.t.Fatal(err)
	}
	return fd
}

func (m *fuseMount) mounted() bool {
	m.t.Helper()
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(m.dir))
	if err != nil {
		m.t.Fatal(err)
	}
	return len(infos) > 0
}

func (m *fuseMount) unmount() {
	m.t.Helper()
	if err := failover.Unmount(m.dir, false); err != nil {
		m.t.Fatal(err)
	}
}

func (m *fuseMount) cleanup() {
	if m.t.Failed() {
		fusetest.AbortConnection(m.t, m.dir)
	}
	if err := failover.Unmount(m.dir, true); err != nil {
		m.t.Errorf("cleanup: %v", err)
	}
	if m.fd >= 0 {
		unix.Close(m.fd)
		m.fd = -1
	}
}

// tocEntries counts the entries of l's TOC as the TOC itself does. The toc
// package is the worker's source too, but here it reads the blob straight
// from memory.
func tocEntries(t *testing.T, l *testregistry.Layer) int {
	t.Helper()
	got, err := toc.Fetch(context.Background(), memBlob(l.Blob), l.Digest, l.TOCDigest, toc.DefaultLimits())
	if err != nil {
		t.Fatalf("reading back the TOC of the test layer: %v", err)
	}
	return len(got.TOC.Entries)
}

// memBlob is a toc.Source over bytes in memory.
type memBlob []byte

func (m memBlob) Size() int64 { return int64(len(m)) }

func (m memBlob) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(m)) {
		return 0, fmt.Errorf("offset %d outside %d bytes", off, len(m))
	}
	n := copy(p, m[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
