package worker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/containerd/log/logtest"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/remote"
	"github.com/lazyfs/lazyfs/toc"
	"github.com/lazyfs/lazyfs/worker"
)

// testTimeout bounds every wait on the kernel or the worker, so that a bug
// shows as a failure instead of a hung test.
const testTimeout = 15 * time.Second

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

// within runs fn, which touches a mount, and fails the test if it does not
// return in time. A call left blocked is released by the mount's cleanup,
// which aborts the connection of a failed test.
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

// testContext logs to the test and bounds a call to the worker.
func testContext(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithTimeout(logtest.WithT(t.Context(), t), testTimeout)
}

// newWorker returns a worker keeping its TOCs under root, resolving refs
// with default options (127.0.0.1 is plain http). Cleanup closes it.
func newWorker(t *testing.T, root string, exitWhenIdle bool) *worker.Worker {
	t.Helper()
	ctx := logtest.WithT(context.Background(), t)
	w, err := worker.New(ctx, worker.Options{
		ID:           "test",
		Version:      "test-version",
		Root:         root,
		Resolver:     remote.NewResolver(remote.Options{}),
		Limits:       toc.DefaultLimits(),
		FuseReaders:  2,
		ExitWhenIdle: exitWhenIdle,
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
	requireFuse(t)
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
		abortConnection(m.t, m.dir)
	}
	if err := failover.Unmount(m.dir, true); err != nil {
		m.t.Errorf("cleanup: %v", err)
	}
	if m.fd >= 0 {
		unix.Close(m.fd)
		m.fd = -1
	}
}

// closeFD drops the test's copy of the fd.
func (m *fuseMount) closeFD() {
	unix.Close(m.fd)
	m.fd = -1
}

// abortConnection ends the FUSE connection mounted at dir through the
// fusectl filesystem, which fails every call blocked on it.
func abortConnection(t *testing.T, dir string) {
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
	if err != nil || len(infos) == 0 {
		return
	}
	const fusectl = "/sys/fs/fuse/connections"
	if entries, _ := os.ReadDir(fusectl); len(entries) == 0 {
		_ = unix.Mount("fusectl", fusectl, "fusectl", 0, "")
	}
	p := fmt.Sprintf("%s/%d/abort", fusectl, infos[0].Minor)
	if err := os.WriteFile(p, []byte("1"), 0o200); err != nil {
		t.Logf("failed to abort the FUSE connection at %s: %v", dir, err)
	}
}

// fuseFDs counts this process's open /dev/fuse fds: the test's own copies
// plus those the worker holds.
func fuseFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && target == "/dev/fuse" {
			n++
		}
	}
	return n
}

// checkFiles reads every file and symlink of l through the mount at dir and
// compares it with what the tar held. Calls are bounded by within.
func checkFiles(t *testing.T, dir string, l *testLayer) {
	t.Helper()
	within(t, "list "+dir, func() {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Errorf("readdir: %v", err)
			return
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if strings.Join(names, ",") != strings.Join(l.top, ",") {
			t.Errorf("root lists %q, want %q", names, l.top)
		}
	})
	for name, want := range l.files {
		within(t, "read "+name, func() {
			got, err := readFile(filepath.Join(dir, name))
			switch {
			case err != nil:
				t.Errorf("read %s: %v", name, err)
			case string(got) != string(want):
				t.Errorf("%s: got %d bytes, want %d bytes equal to the tar's", name, len(got), len(want))
			}
		})
	}
	for name, want := range l.links {
		within(t, "readlink "+name, func() {
			got, err := os.Readlink(filepath.Join(dir, name))
			if err != nil || got != want {
				t.Errorf("readlink %s = %q, %v; want %q", name, got, err, want)
			}
		})
	}
}

// readFile reads a file of a FUSE mount with plain syscalls. os.Open would
// register the fd with the runtime's epoll, and on a FUSE file epoll_ctl
// sends a POLL request while its thread holds a P (golang/go#21014): if the
// request waits on a server in this process (or on one that is gone), a
// garbage collection stops every goroutine for good and no timeout fires.
func readFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	return readFD(fd)
}

// readFD reads fd to its end with read(2).
func readFD(fd int) ([]byte, error) {
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return out, err
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, buf[:n]...)
	}
}
