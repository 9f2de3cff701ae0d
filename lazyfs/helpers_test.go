package lazyfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/containerd/log/logtest"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/failover"
)

// requireFuse stops a test that mounts: it needs root and /dev/fuse. It
// skips on a developer machine and fails under CI=true, where a missing
// requirement is a broken runner rather than a reason to pass.
func requireFuse(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		missing = append(missing, "/dev/fuse")
	}
	if len(missing) == 0 {
		return
	}
	msg := "test needs " + strings.Join(missing, " and ")
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// testTimeout bounds every wait on the kernel, so that a bug shows as a
// failure instead of a hung test.
const testTimeout = 20 * time.Second

// within runs fn, which touches a mount, and fails the test if it does not
// return in time. A call blocked on a mount nobody serves is released by the
// mount's cleanup, which aborts the connection.
//
// A panic in fn is turned into a test failure: a test process that dies
// while it holds files on a mount it serves itself never finishes exiting
// (closing them waits for a server that died with it).
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("%s: panic: %v\n%s", what, r, debug.Stack())
			}
		}()
		fn()
	}()
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatalf("%s: no answer after %v", what, testTimeout)
	}
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
	init   chan InitState
}

// newMount opens /dev/fuse and mounts it at a fresh directory, without
// serving it yet. Cleanup unmounts, stops Serve and closes the fd, which
// also releases any call still blocked on the mount.
func newMount(t *testing.T, tree *Tree, reader FileReader) *mount {
	t.Helper()
	requireFuse(t)
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
		init:   make(chan InitState, 1),
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
		opts.OnInit = func(s InitState) { m.init <- s }
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
		m.abort()
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

// abort ends the connection through the fusectl filesystem, which releases
// every call blocked on it, served or not.
func (m *mount) abort() {
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(m.dir))
	if err != nil || len(infos) == 0 {
		return
	}
	const fusectl = "/sys/fs/fuse/connections"
	if _, err := os.Stat(fusectl + "/"); err != nil {
		return
	}
	if entries, _ := os.ReadDir(fusectl); len(entries) == 0 {
		_ = unix.Mount("fusectl", fusectl, "fusectl", 0, "")
	}
	p := fmt.Sprintf("%s/%d/abort", fusectl, infos[0].Minor)
	if err := os.WriteFile(p, []byte("1"), 0o200); err != nil {
		m.t.Logf("failed to abort the FUSE connection: %v", err)
	}
}

// readFileRaw reads a whole file with raw system calls. Tests must not use
// os.Open on a mount this process serves: os.File registers the fd with the
// runtime's epoll, and a FUSE request issued from there while the runtime
// stops the world can freeze the test binary (golang/go#21014).
func readFileRaw(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var out []byte
	buf := make([]byte, 128<<10)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return out, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, buf[:n]...)
	}
}
