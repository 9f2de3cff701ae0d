package failover

import (
	"testing"

	"golang.org/x/sys/unix"
)

// fdOpen tells whether fd is an open descriptor.
func fdOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

func TestConnHoldsOneCopy(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[1])
	init := InitState{Request: initRequest(capInitExt | capHasResend), Reply: []byte{16}}

	c := NewConn(-1, init)
	if c.Held() || c.CanTakeOver() {
		t.Fatal("a Conn without an fd claims to hold one")
	}
	if !c.Hold(p[0], init) || c.FD() != p[0] || !c.CanTakeOver() {
		t.Fatalf("Hold of a first copy: fd %d, can take over %v", c.FD(), c.CanTakeOver())
	}
	// A second copy of the same connection is closed, not leaked.
	dup, err := unix.FcntlInt(uintptr(p[0]), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hold(dup, init) || fdOpen(dup) && dup != p[0] {
		t.Errorf("Hold of a second copy: kept it, or left fd %d open", dup)
	}
	if c.FD() != p[0] {
		t.Errorf("the first copy was replaced")
	}
	// Without a valid INIT state no successor can take it over.
	c.SetInit(InitState{Request: []byte("short")})
	if c.CanTakeOver() {
		t.Error("CanTakeOver with a malformed INIT state")
	}
	c.Close()
	c.Close()
	if c.Held() || fdOpen(p[0]) {
		t.Errorf("after Close: held %v, fd open %v", c.Held(), fdOpen(p[0]))
	}
}

// TestConnHoldsFDZero: 0 is an fd like any other (a process started with
// stdin closed may get it from /dev/fuse): held, handed over, not replaced.
func TestConnHoldsFDZero(t *testing.T) {
	init := InitState{Request: initRequest(capInitExt), Reply: []byte{16}}
	c := NewConn(0, init)
	if !c.Held() || !c.CanTakeOver() || c.FD() != 0 {
		t.Fatalf("a Conn holding fd 0: held %v, can take over %v", c.Held(), c.CanTakeOver())
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[1])
	if c.Hold(p[0], init) {
		t.Error("a second copy replaced fd 0")
	}
	if fdOpen(p[0]) {
		unix.Close(p[0])
		t.Error("the second copy was left open")
	}
}
