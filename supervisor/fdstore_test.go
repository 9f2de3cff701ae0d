package supervisor

import (
	"context"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/failover"
)

// TestStoredMountFDs: of the fds the fd store hands back, one per mount is
// kept; another copy of the same name, and names that are not a mount's,
// are closed rather than held forever (a held copy keeps a connection alive).
func TestStoredMountFDs(t *testing.T) {
	open := func() int {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fd
	}
	isOpen := func(fd int) bool {
		_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		return err == nil
	}
	first, second, stranger := open(), open(), open()
	got := storedMountFDs(context.Background(), map[string][]int{
		failover.MountFDName("m1"): {first, second},
		"not-ours":                 {stranger},
	})
	defer unix.Close(first)
	if len(got) != 1 || got["m1"] != first {
		t.Fatalf("kept %v, want only m1 with fd %d", got, first)
	}
	if isOpen(second) || isOpen(stranger) {
		t.Errorf("fds left open: second copy %v, stranger %v", isOpen(second), isOpen(stranger))
	}
}
