package daemonapi_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/containerd/log/logtest"
)

// shortDir returns a fresh directory whose socket paths stay well within
// the 108 bytes of sun_path (t.TempDir's paths grow with the test's name).
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// testContext is a ctx whose log lines go to the test's log.
func testContext(t *testing.T) context.Context {
	return logtest.WithT(context.Background(), t)
}

var pollerOnce sync.Once

// startPoller makes the runtime open its network poller (an epoll fd and an
// eventfd, kept for the process's life) before a first count of fds: in the
// first test that uses a socket they would otherwise look like a leak.
func startPoller() {
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		l.Close()
	}
}

// checkLeaks makes the test fail if, once every later cleanup has run, the
// process holds more fds or goroutines than when it was called. Call it
// first thing in the test (cleanups run last-registered first).
func checkLeaks(t *testing.T) {
	t.Helper()
	pollerOnce.Do(startPoller)
	fds, goroutines := countFDs(t), runtime.NumGoroutine()
	t.Cleanup(func() {
		// Goroutines wind down asynchronously after their owner is
		// done waiting for them (e.g. net/http's connection closers).
		deadline := time.Now().Add(5 * time.Second)
		for {
			gotFDs, gotG := countFDs(t), runtime.NumGoroutine()
			if gotFDs <= fds && gotG <= goroutines {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("leak: %d fds (was %d), %d goroutines (was %d)\n%s", gotFDs, fds, gotG, goroutines, buf)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func countFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// socketPath returns a path for a socket in a fresh short directory whose
// parent does not exist yet.
func socketPath(t *testing.T, name string) string {
	return filepath.Join(shortDir(t), "w", name)
}
