// Package fusetest holds what tests that mount FUSE need to stay safe:
// reading files without the runtime poller, bounding calls that may hang,
// aborting a stuck connection, and counting /dev/fuse fds for leak checks.
//
// A test that serves a mount from its own process must never use os.Open
// on it: os.File registers the fd with the runtime's epoll, and on a FUSE
// file epoll_ctl sends a POLL request while its thread holds a P
// (golang/go#21014). If the request waits on a server in this process, or
// on one that is gone, a garbage collection stops every goroutine for good
// and no timeout fires. ReadFile and ReadFD use plain system calls.
package fusetest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// ReadFile reads a whole file with open(2) and read(2).
func ReadFile(path string) ([]byte, error) {
	fd, err := Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	return ReadFD(fd)
}

// Open is open(2), retried on EINTR.
func Open(path string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Open(path, flags, mode)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// Pread is pread(2), retried on EINTR, as os.File does: a test's thread
// gets the Go runtime's preemption signals while it waits on a mount.
func Pread(fd int, p []byte, off int64) (int, error) {
	for {
		n, err := unix.Pread(fd, p, off)
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}

// ReadFileUncached reads a whole file as ReadFile does, after evicting its
// pages from the page cache, so that the read reaches the FUSE server (the
// kernel keeps a lazyfs file's pages across opens: FOPEN_KEEP_CACHE).
func ReadFileUncached(path string) ([]byte, error) {
	fd, err := Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
		return nil, &os.PathError{Op: "fadvise", Path: path, Err: err}
	}
	return ReadFD(fd)
}

// ReadFD reads fd to its end with read(2).
func ReadFD(fd int) ([]byte, error) {
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

// Reader reads fd with read(2), as an io.Reader.
type Reader int

func (fd Reader) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(fd), p)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return 0, &os.PathError{Op: "read", Path: fmt.Sprintf("fd %d", int(fd)), Err: err}
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// Within runs fn, which may touch a mount, and fails t if it does not
// return within timeout. A call left blocked must be released by the
// test's cleanup (AbortConnection).
//
// A panic in fn becomes a test failure: a test process that dies while it
// holds files on a mount it serves itself never finishes exiting (closing
// them waits for a server that died with it).
func Within(t testing.TB, timeout time.Duration, what string, fn func()) {
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
	case <-time.After(timeout):
		t.Fatalf("%s: no answer after %v", what, timeout)
	}
}

// AbortConnection ends every FUSE connection mounted at dir through the
// fusectl filesystem (mounting it if needed), which fails every call
// blocked on it, served or not. It reads /proc/self/mountinfo, never dir,
// whose server may be gone. Failures are only logged: it runs in cleanups.
func AbortConnection(t testing.TB, dir string) {
	t.Helper()
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
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
	for _, info := range infos {
		p := fmt.Sprintf("%s/%d/abort", fusectl, info.Minor)
		if err := os.WriteFile(p, []byte("1"), 0o200); err != nil {
			t.Logf("failed to abort the FUSE connection at %s: %v", dir, err)
		}
	}
}

// FuseFDs counts this process's open /dev/fuse fds.
func FuseFDs(t testing.TB) int {
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
