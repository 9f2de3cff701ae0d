package lazyfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// waker stops readers that wait for requests: every reader polls the FUSE
// fd together with one eventfd, which signal makes readable for good.
type waker struct {
	mu     sync.Mutex
	fd     int  // eventfd
	closed bool // fd is closed (its number may be another file's now)
	isStop atomic.Bool
}

func newWaker() (*waker, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("failed to create eventfd: %w", err)
	}
	return &waker{fd: fd}, nil
}

// signal wakes every reader and makes them stop. It may run after close
// (from context.AfterFunc), which the lock makes harmless.
func (w *waker) signal() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.isStop.Store(true)
	if w.closed {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(w.fd, one[:])
}

// stopped reports whether signal was called.
func (w *waker) stopped() bool { return w.isStop.Load() }

// wait blocks until fuseFD may have a request or the waker was signalled;
// it returns errStopped in the latter case.
func (w *waker) wait(fuseFD int) error {
	fds := []unix.PollFd{
		{Fd: int32(fuseFD), Events: unix.POLLIN},
		{Fd: int32(w.fd), Events: unix.POLLIN},
	}
	for {
		_, err := unix.Ppoll(fds, nil, nil) // no timeout
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("failed to poll FUSE fd: %w", err)
		}
		break
	}
	if fds[1].Revents != 0 || w.stopped() {
		return errStopped
	}
	// POLLIN, or POLLERR once the connection ended: read tells which.
	return nil
}

// close releases the eventfd once no reader uses it any more.
func (w *waker) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		_ = unix.Close(w.fd)
		w.closed = true
	}
}
