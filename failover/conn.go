package failover

import (
	"sync"

	"golang.org/x/sys/unix"
)

// Conn is the snapshotter's hold on one FUSE connection: its /dev/fuse fd,
// kept for the mount's whole life and never read, and the INIT state a
// successor needs to take the connection over. While the fd is open the
// kernel keeps the connection alive, so that readers of a dead worker's
// mount wait for its successor instead of failing (FAILOVER.md rule 1).
//
// The fd is a raw int, never an *os.File a finalizer could close. A Conn
// is safe for concurrent use.
type Conn struct {
	mu   sync.Mutex
	fd   int // -1: no copy held
	init InitState
}

// NewConn holds fd (which it now owns; -1 for none) with the connection's
// INIT state (zero while INIT is not answered yet).
func NewConn(fd int, init InitState) *Conn {
	return &Conn{fd: fd, init: init}
}

// Open opens /dev/fuse and mounts the connection at mountpoint (see Mount).
// On error nothing is left open or mounted.
func Open(mountpoint, fsname, subtype string) (*Conn, error) {
	fd, err := OpenFuse()
	if err != nil {
		return nil, err
	}
	if err := Mount(fd, mountpoint, fsname, subtype); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return NewConn(fd, InitState{}), nil
}

// FD returns the held fd, -1 if none: to hand a copy to a worker, never to
// read from or close.
func (c *Conn) FD() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fd
}

// Init returns the connection's INIT state.
func (c *Conn) Init() InitState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.init
}

// SetInit records the INIT state the serving worker reported.
func (c *Conn) SetInit(s InitState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init = s
}

// Held tells whether a copy of the fd is held.
func (c *Conn) Held() bool { return c.FD() >= 0 }

// CanTakeOver tells whether a successor can be handed this connection: the
// fd is held and its INIT is known.
func (c *Conn) CanTakeOver() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fd >= 0 && c.init.Check() == nil
}

// Hold takes fd (and the INIT state that comes with it) when no copy is
// held yet; otherwise fd is closed. It reports whether fd was taken.
func (c *Conn) Hold(fd int, init InitState) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd >= 0 {
		unix.Close(fd)
		return false
	}
	c.fd, c.init = fd, init
	return true
}

// Close drops the held copy. Once the serving worker's copy is gone too,
// the kernel aborts the connection and its readers get an error instead of
// waiting. Closing twice is harmless.
func (c *Conn) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}
