package lazyfs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/containerd/log/logtest"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/internal/fusetest"
	"github.com/lazyfs/lazyfs/internal/testreq"
)

// testTimeout bounds every wait on the kernel, so that a bug shows as a
// failure instead of a hung test.
const testTimeout = 20 * time.Second

// within bounds fn, which touches a mount, by testTimeout.
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	fusetest.Within(t, testTimeout, what, fn)
}

// mount is a FUSE connection mounted at dir; Serve runs on it in other
// goroutines of the test process.
type mount struct {
	t   *testing.T
	ctx context.Context
	fd  int
	dir string
	fs  *FS
	// served receives each Serve call's result; running counts the
	// calls whose result nobody received yet, so that close waits only
	// for a Serve that is still running.
	served  chan error
	running int
	cancel  context.CancelFunc
	init    chan failover.InitState
}

// newMount opens /dev/fuse and mounts it at a fresh directory, without
// serving it yet. Cleanup unmounts, stops Serve and closes the fd, which
// also releases any call still blocked on the mount.
func newMount(t *testing.T, tree *Tree, reader FileReader) *mount {
	t.Helper()
	testreq.RequireFUSE(t)
	ctx := logtest.WithT(context.Background(), t)
	fd, err := failover.OpenFuse()
	if err != nil {
		t.Fatal(err)
	}
	m := &mount{
		t:      t,
		ctx:    ctx,
		fd:     fd,
		dir:    t.TempDir(),
		fs:     NewFS(ctx, tree, reader),
		served: make(chan error, 4),
		cancel: func() {},
		init:   make(chan failover.InitState, 1),
	}
	if err := failover.Mount(fd, m.dir, "lazyfs-test", "lazyfs"); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	t.Cleanup(m.close)
	return m
}

// serve starts Serve with opts in the background.
func (m *mount) serve(opts ServeOptions) {
	if opts.OnInit == nil && opts.Resume == nil {
		opts.OnInit = func(s failover.InitState) { m.init <- s }
	}
	m.serveFS(m.fs, opts)
}

// serveFS starts Serve of fs (m.fs, or one wrapping it) in the background.
func (m *mount) serveFS(fs fuse.RawFileSystem, opts ServeOptions) {
	ctx, cancel := context.WithCancel(m.ctx)
	m.cancel = cancel
	m.running++
	go func() { m.served <- Serve(ctx, m.fd, fs, opts) }()
}

// result waits up to d for the result of a Serve call.
func (m *mount) result(d time.Duration) (ok bool, err error) {
	select {
	case err := <-m.served:
		m.running--
		return true, err
	case <-time.After(d):
		return false, nil
	}
}

// stop cancels the running Serve and waits for it.
func (m *mount) stop() error {
	m.t.Helper()
	m.cancel()
	if ok, err := m.result(testTimeout); ok {
		return err
	}
	m.t.Fatal("Serve did not stop")
	return nil
}

// unmount unmounts cleanly and checks that Serve then returns nil.
func (m *mount) unmount() {
	m.t.Helper()
	if err := failover.Unmount(m.dir, false); err != nil {
		m.t.Fatal(err)
	}
	ok, err := m.result(testTimeout)
	switch {
	case !ok:
		m.t.Error("Serve did not return after unmount")
	case err != nil:
		m.t.Errorf("Serve after unmount: %v, want nil", err)
	}
}

func (m *mount) close() {
	if m.t.Failed() {
		fusetest.AbortConnection(m.t, m.dir)
	}
	_ = failover.Unmount(m.dir, true)
	m.cancel()
	// Only a Serve still running is waited for (a test that unmounted
	// has its result already): waiting on nothing cost every mount test
	// a second.
	for m.running > 0 {
		ok, err := m.result(time.Second)
		if !ok {
			break
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			m.t.Errorf("Serve: %v", err)
		}
	}
	unix.Close(m.fd)
}
