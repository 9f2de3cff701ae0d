package daemonapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// ControlClient is a controller's connection to a worker's control socket.
// Its methods may be called concurrently.
type ControlClient struct {
	path   string
	pc     *packetConn
	peer   *unix.Ucred
	logCtx context.Context

	seq atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]chan ControlMessage
	err     error // why the connection ended; set before done is closed
	closing bool

	done       chan struct{}
	readerDone chan struct{}
	closeOnce  sync.Once
}

// DialControl connects to the control socket at path and waits to be
// admitted. ctx bounds the whole wait. It fails with errdefs.ErrUnavailable
// when nothing listens at path, errdefs.ErrConflict while another
// controller is connected, and errdefs.ErrPermissionDenied when the worker
// does not accept this process's uid (or does not run as root or as this
// process's uid itself).
func DialControl(ctx context.Context, path string) (*ControlClient, error) {
	c, err := dialControl(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("control %s: connect: %w", path, err)
	}
	return c, nil
}

func dialControl(ctx context.Context, path string) (*ControlClient, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unixpacket", path)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
	}
	conn := nc.(*net.UnixConn)
	cred, err := checkPeer(conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("worker: %w", err)
	}
	pc := newPacketConn(conn)
	release := bindDeadline(ctx, conn.SetReadDeadline)
	hello, fds, err := pc.read()
	release()
	closeFDs(fds)
	switch {
	case errors.Is(err, io.EOF):
		err = fmt.Errorf("worker closed the connection: %w", errdefs.ErrUnavailable)
	case err != nil:
		err = contextError(ctx, err)
	case hello.Error != nil:
		err = hello.Error.Err(0)
	case hello.Type != MessageHello:
		err = fmt.Errorf("worker greeted with %q, not %q: %w", hello.Type, MessageHello, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	c := &ControlClient{
		path:       path,
		pc:         pc,
		peer:       cred,
		logCtx:     log.WithLogger(context.WithoutCancel(ctx), log.G(ctx).WithField("socket", path)),
		pending:    make(map[uint64]chan ControlMessage),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	go c.readLoop()
	return c, nil
}

// PeerPID is the pid of the worker process that accepted the connection,
// as the kernel recorded it (SO_PEERCRED).
func (c *ControlClient) PeerPID() int { return int(c.peer.Pid) }

// Done is closed when the connection has ended: the worker closed it or
// exited, or Close was called.
func (c *ControlClient) Done() <-chan struct{} { return c.done }

// Close ends the connection, which lets another controller connect. Calls
// in flight fail with errdefs.ErrUnavailable. Closing twice is harmless.
func (c *ControlClient) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closing = true
		c.mu.Unlock()
		c.pc.conn.Close()
		<-c.readerDone
	})
	return nil
}

// Attach hands the worker a copy of the mounted /dev/fuse fd for mountID
// and returns the FUSE INIT state once the worker has answered INIT on it.
// The caller keeps fd (SCM_RIGHTS gives the worker its own). If ctx ends
// first the worker may still attach the fd; its late reply is discarded.
func (c *ControlClient) Attach(ctx context.Context, mountID string, fd int) (InitState, error) {
	st, err := c.attach(ctx, mountID, fd)
	if err != nil {
		return InitState{}, fmt.Errorf("control %s: attach %s: %w", c.path, mountID, err)
	}
	return st, nil
}

func (c *ControlClient) attach(ctx context.Context, mountID string, fd int) (InitState, error) {
	if err := ValidateMountID(mountID); err != nil {
		return InitState{}, err
	}
	// sendmsg would refuse a bad fd too, but as an error of the
	// connection; this one is the caller's.
	if fd < 0 {
		return InitState{}, fmt.Errorf("fd %d: %w", fd, errdefs.ErrInvalidArgument)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		return InitState{}, fmt.Errorf("fd %d is not open: %w", fd, errdefs.ErrInvalidArgument)
	}
	reply, err := c.call(ctx, ControlMessage{Type: MessageAttach, MountID: mountID}, fd)
	if err != nil {
		return InitState{}, err
	}
	if reply.Error != nil {
		return InitState{}, reply.Error.Err(0)
	}
	if reply.Type != MessageAttach || reply.MountID != mountID {
		return InitState{}, fmt.Errorf("worker answered %s %q to attach %q: %w", reply.Type, reply.MountID, mountID, errdefs.ErrInternal)
	}
	return InitState{Request: reply.InitRequest, Reply: reply.InitReply}, nil
}

// call sends msg with fds and waits for the reply with the same seq.
func (c *ControlClient) call(ctx context.Context, msg ControlMessage, fds ...int) (ControlMessage, error) {
	msg.Seq = c.seq.Add(1)
	ch := make(chan ControlMessage, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return ControlMessage{}, err
	}
	c.pending[msg.Seq] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, msg.Seq)
		c.mu.Unlock()
	}()

	if err := c.pc.write(ctx, msg, fds...); err != nil {
		if ctx.Err() == nil && !errdefs.IsInvalidArgument(err) {
			err = fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
		}
		return ControlMessage{}, err
	}
	select {
	case reply := <-ch:
		return reply, nil
	case <-c.done:
		select {
		case reply := <-ch:
			return reply, nil
		default:
		}
		return ControlMessage{}, c.err
	case <-ctx.Done():
		return ControlMessage{}, ctx.Err()
	}
}

// readLoop routes replies to their callers until the connection ends.
func (c *ControlClient) readLoop() {
	defer close(c.readerDone)
	for {
		msg, fds, err := c.pc.read()
		var perr *packetError
		if errors.As(err, &perr) {
			log.G(c.logCtx).WithError(err).Warn("dropped control packet from worker")
			continue
		}
		if err != nil {
			c.end(err)
			return
		}
		// No reply this client asks for carries fds.
		closeFDs(fds)
		c.mu.Lock()
		ch := c.pending[msg.Seq]
		delete(c.pending, msg.Seq)
		c.mu.Unlock()
		if ch == nil {
			entry := log.G(c.logCtx).WithField("type", msg.Type).WithField("seq", msg.Seq)
			if msg.Error != nil {
				entry = entry.WithField("error", msg.Error.Message)
			}
			entry.Warn("dropped control message nobody waits for")
			continue
		}
		ch <- msg
	}
}

// end records why the connection ended and wakes every waiting call.
func (c *ControlClient) end(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closing:
		c.err = fmt.Errorf("control connection closed: %w", errdefs.ErrUnavailable)
	case errors.Is(cause, io.EOF):
		c.err = fmt.Errorf("worker closed the control connection: %w", errdefs.ErrUnavailable)
	default:
		c.err = fmt.Errorf("control connection failed: %w: %w", errdefs.ErrUnavailable, cause)
	}
	c.pc.conn.Close()
	close(c.done)
}
