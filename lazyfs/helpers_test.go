package lazyfs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/containerd/log/logtest"
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
	// served receives each Serve call's result.
	served chan error
	cancel context.CancelFunc
	init   chan failover.InitState
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
	ctx, cancel := context.WithCancel(m.ctx)
	m.cancel = cancel
	if opts.OnInit == nil && opts.Resume == nil {
		opts.OnInit = func(s failover.InitState) { m.init <- s }
	}
	go func() { m.served <- Serve(ctx, m.fd, m.fs, opts) }()
}

// stop cancels the running Serve and waits for it.
func (m *mount) stop() error {
	m.t.Helper()
	m.cancel()
	select {
	case err := <-m.served:
		return err
	case <-time.After(testTimeout):
		m.t.Fatal("Serve did not stop")
		return nil
	}
}

// unmount unmounts cleanly and checks that Serve then returns nil.
func (m *mount) unmount() {
	m.t.Helper()
	if err := failover.Unmount(m.dir, false); err != nil {
		m.t.Fatal(err)
	}
	select {
	case err := <-m.served:
		if err != nil {
			m.t.Errorf("Serve after unmount: %v, want nil", err)
		}
	case <-time.After(testTimeout):
		m.t.Error("Serve did not return after unmount")
	}
}

func (m *mount) close() {
	if m.t.Failed() {
		fusetest.AbortConnection(m.t, m.dir)
	}
	_ = failover.Unmount(m.dir, true)
	m.cancel()
	select {
	case err := <-m.served:
		if err != nil && !errors.Is(err, context.Canceled) {
			m.t.Errorf("Serve: %v", err)
		}
	case <-time.After(time.Second):
	}
	unix.Close(m.fd)
}
