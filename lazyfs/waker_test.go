package lazyfs

import (
	"os"
	"testing"
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
// releases its eventfd (a worker serves mounts for months), and a signal
// after close, which context.AfterFunc may deliver, writes nowhere.
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
	w.close()
	if got := eventfds(t); got != before {
		t.Errorf("%d eventfds after close, want %d", got, before)
	}
	w.signal()
}
