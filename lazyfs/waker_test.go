package lazyfs

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// eventfds counts this process's open eventfds.
func eventfds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == "anon_inode:[eventfd]" {
			n++
		}
	}
	return n
}

// TestWakerReleasesItsEventfd: every Serve makes a waker; closing it
// releases its eventfd (a worker serves mounts for months), once: the
// number may be another file's by then, which neither a second close nor
// a signal after close (context.AfterFunc may deliver one) touches.
func TestWakerReleasesItsEventfd(t *testing.T) {
	before := eventfds(t)
	w, err := newWaker()
	if err != nil {
		t.Fatal(err)
	}
	if got := eventfds(t); got != before+1 {
		t.Fatalf("%d eventfds with a waker, want %d", got, before+1)
	}
	w.signal()
	if err := w.wait(w.fd); err != errStopped {
		t.Fatalf("wait after signal = %v, want errStopped", err)
	}
	w.close()
	if got := eventfds(t); got != before {
		t.Errorf("%d eventfds after close, want %d", got, before)
	}

	// The lowest free number is the waker's old one: the next file
	// usually gets it.
	other, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(other)
	t.Logf("waker's fd %d, the next file's %d", w.fd, other)
	w.close()
	w.signal()
	var buf [8]byte
	if _, err := unix.Read(other, buf[:]); err != unix.EAGAIN {
		t.Errorf("read of another eventfd after close and signal: %v, want EAGAIN (nothing written)", err)
	}
}
