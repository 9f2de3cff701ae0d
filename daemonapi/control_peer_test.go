package daemonapi_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/internal/testreq"
)

func TestPeerCredentials(t *testing.T) {
	testreq.RequireRoot(t) // both cases: root's own peer, and setresuid away from it
	checkLeaks(t)
	path := startControl(t, closingHandler)

	t.Run("root is admitted", func(t *testing.T) {
		c := dial(t, path)
		r, _ := pipe(t)
		if _, err := c.Attach(testContext(t), daemonapi.AttachRequest{MountID: "m"}, r); err != nil {
			t.Fatal(err)
		}
		c.Close()
	})

	t.Run("another uid is refused", func(t *testing.T) {
		// Let the file system pass uid 65534, so that SO_PEERCRED is
		// what refuses it.
		for _, dir := range []string{filepath.Dir(filepath.Dir(path)), filepath.Dir(path)} {
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(path, 0o666); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() {
			// setresuid(2) straight to the kernel changes this thread
			// only (Go's wrappers change every thread); the locked
			// thread dies with this goroutine.
			runtime.LockOSThread()
			if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 65534, ^uintptr(0)); errno != 0 {
				errc <- errno
				return
			}
			_, err := daemonapi.DialControl(testContext(t), path)
			errc <- err
		}()
		err := <-errc
		if !errdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), "uid 65534") {
			t.Errorf("DialControl() as uid 65534 = %v, want permission denied naming the uid", err)
		}
		// The refusal did not take the controller's place.
		c := dial(t, path)
		c.Close()
	})
}
