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

	"github.com/lazyfs/lazyfs/failover"
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
	pending map[uint64]*call
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
		pending:    make(map[uint64]*call),
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

// Attach hands the worker a copy of the mounted /dev/fuse fd for
// req.MountID and returns the FUSE INIT state once the worker serves it
// (see ControlHandler.Attach). The caller keeps fd (SCM_RIGHTS gives the
// worker its own). If ctx ends first the worker may still attach the fd; its
// late reply is discarded.
func (c *ControlClient) Attach(ctx context.Context, req AttachRequest, fd int) (failover.InitState, error) {
	st, err := c.attach(ctx, req, fd)
	if err != nil {
		return failover.InitState{}, fmt.Errorf("control %s: attach %s: %w", c.path, req.MountID, err)
	}
	return st, nil
}

func (c *ControlClient) attach(ctx context.Context, req AttachRequest, fd int) (failover.InitState, error) {
	if err := ValidateMountID(req.MountID); err != nil {
		return failover.InitState{}, err
	}
	// sendmsg would refuse a bad fd too, but as an error of the
	// connection; this one is the caller's.
	if fd < 0 {
		return failover.InitState{}, fmt.Errorf("fd %d: %w", fd, errdefs.ErrInvalidArgument)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		return failover.InitState{}, fmt.Errorf("fd %d is not open: %w", fd, errdefs.ErrInvalidArgument)
	}
	msg := ControlMessage{Type: MessageAttach, MountID: req.MountID, RecoverInit: req.RecoverInit}
	if req.Resume != nil {
		if err := req.Resume.Check(); err != nil {
			return failover.InitState{}, fmt.Errorf("INIT state to resume: %w", err)
		}
		msg.InitRequest, msg.InitReply, msg.DeferResend = req.Resume.Request, req.Resume.Reply, req.DeferResend
	}
	reply, err := c.call(ctx, msg, fd)
	if err != nil {
		return failover.InitState{}, err
	}
	if reply.Error != nil {
		return failover.InitState{}, reply.Error.Err(0)
	}
	if reply.Type != MessageAttach || reply.MountID != req.MountID {
		return failover.InitState{}, fmt.Errorf("worker answered %s %q to attach %q: %w", reply.Type, reply.MountID, req.MountID, errdefs.ErrInternal)
	}
	return failover.InitState{Request: reply.InitRequest, Reply: reply.InitReply}, nil
}

// Collect asks the worker for a copy of every FUSE connection it serves,
// with its INIT state: a controller that lost its own copies (a restarted
// snapshotter) keeps the connections alive through a later death of the
// worker with them. The caller owns the returned fds. On error no fd is
// returned (those received are closed).
func (c *ControlClient) Collect(ctx context.Context) ([]HeldConnection, error) {
	conns, err := c.collect(ctx)
	if err != nil {
		return nil, fmt.Errorf("control %s: collect: %w", c.path, err)
	}
	return conns, nil
}

func (c *ControlClient) collect(ctx context.Context) (conns []HeldConnection, err error) {
	defer func() {
		if err != nil {
			for _, hc := range conns {
				unix.Close(hc.FD)
			}
			conns = nil
		}
	}()
	cl, err := c.start(ctx, ControlMessage{Type: MessageCollect}, 64)
	if err != nil {
		return nil, err
	}
	defer cl.finish()
	for {
		p, err := cl.next(ctx)
		if err != nil {
			return conns, err
		}
		if p.msg.Type != MessageCollect {
			closeFDs(p.fds)
			if p.msg.Error != nil {
				return conns, p.msg.Error.Err(0)
			}
			return conns, fmt.Errorf("worker answered %s to collect: %w", p.msg.Type, errdefs.ErrInternal)
		}
		if p.msg.Last {
			closeFDs(p.fds)
			if p.msg.Error != nil {
				return conns, p.msg.Error.Err(0)
			}
			return conns, nil
		}
		if len(p.fds) != 1 {
			closeFDs(p.fds)
			return conns, fmt.Errorf("collect message for %q carries %d fds, not 1: %w", p.msg.MountID, len(p.fds), errdefs.ErrInternal)
		}
		conns = append(conns, HeldConnection{
			MountID: p.msg.MountID,
			FD:      p.fds[0],
			Init:    failover.InitState{Request: p.msg.InitRequest, Reply: p.msg.InitReply},
		})
	}
}

// Resend asks the worker to send FUSE_NOTIFY_RESEND on a mount it took
// over with DeferResend, once its predecessor is gone.
func (c *ControlClient) Resend(ctx context.Context, mountID string) error {
	if err := ValidateMountID(mountID); err != nil {
		return fmt.Errorf("control %s: resend: %w", c.path, err)
	}
	reply, err := c.call(ctx, ControlMessage{Type: MessageResend, MountID: mountID})
	if err == nil && reply.Error != nil {
		err = reply.Error.Err(0)
	}
	if err == nil && (reply.Type != MessageResend || reply.MountID != mountID) {
		err = fmt.Errorf("worker answered %s %q: %w", reply.Type, reply.MountID, errdefs.ErrInternal)
	}
	if err != nil {
		return fmt.Errorf("control %s: resend %s: %w", c.path, mountID, err)
	}
	return nil
}

// ReplaceStderr hands the worker fd (a copy: the caller keeps its own) as
// its new stderr and stdout: a re-adopting controller's log pipe.
func (c *ControlClient) ReplaceStderr(ctx context.Context, fd int) error {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		return fmt.Errorf("control %s: stderr: fd %d is not open: %w", c.path, fd, errdefs.ErrInvalidArgument)
	}
	reply, err := c.call(ctx, ControlMessage{Type: MessageStderr}, fd)
	if err == nil && reply.Error != nil {
		err = reply.Error.Err(0)
	}
	if err == nil && reply.Type != MessageStderr {
		err = fmt.Errorf("worker answered %s: %w", reply.Type, errdefs.ErrInternal)
	}
	if err != nil {
		return fmt.Errorf("control %s: stderr: %w", c.path, err)
	}
	return nil
}

// packet is one received message with the fds that came with it.
type packet struct {
	msg ControlMessage
	fds []int
}

// call is a request waiting for its reply (or, for collect, its replies).
type call struct {
	c    *ControlClient
	seq  uint64
	ch   chan packet
	gone chan struct{} // closed when the caller stops waiting
	// sending counts the reader's deliveries in progress: finish waits
	// for them before it drains ch, so that no fd is left in it.
	sending sync.WaitGroup
}

// start sends msg with fds and registers for replies with its seq; room
// is how many replies may queue before the reader waits for the caller.
func (c *ControlClient) start(ctx context.Context, msg ControlMessage, room int, fds ...int) (*call, error) {
	msg.Seq = c.seq.Add(1)
	cl := &call{c: c, seq: msg.Seq, ch: make(chan packet, room), gone: make(chan struct{})}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.pending[msg.Seq] = cl
	c.mu.Unlock()
	if err := c.pc.write(ctx, msg, fds...); err != nil {
		cl.finish()
		if ctx.Err() == nil && !errdefs.IsInvalidArgument(err) {
			err = fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
		}
		return nil, err
	}
	return cl, nil
}

// next waits for the next reply.
func (cl *call) next(ctx context.Context) (packet, error) {
	select {
	case p := <-cl.ch:
		return p, nil
	case <-cl.c.done:
		select {
		case p := <-cl.ch:
			return p, nil
		default:
		}
		return packet{}, cl.c.err
	case <-ctx.Done():
		return packet{}, ctx.Err()
	}
}

// finish stops waiting: later replies are dropped and their fds closed.
func (cl *call) finish() {
	cl.c.mu.Lock()
	delete(cl.c.pending, cl.seq)
	cl.c.mu.Unlock()
	close(cl.gone)
	cl.sending.Wait()
	for {
		select {
		case p := <-cl.ch:
			closeFDs(p.fds)
		default:
			return
		}
	}
}

// call sends msg with fds and waits for the one reply with the same seq.
func (c *ControlClient) call(ctx context.Context, msg ControlMessage, fds ...int) (ControlMessage, error) {
	cl, err := c.start(ctx, msg, 1, fds...)
	if err != nil {
		return ControlMessage{}, err
	}
	defer cl.finish()
	p, err := cl.next(ctx)
	if err != nil {
		return ControlMessage{}, err
	}
	// No single reply this client asks for carries fds.
	closeFDs(p.fds)
	return p.msg, nil
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
		c.mu.Lock()
		cl := c.pending[msg.Seq]
		if cl != nil {
			cl.sending.Add(1)
		}
		c.mu.Unlock()
		if cl == nil {
			closeFDs(fds)
			entry := log.G(c.logCtx).WithField("type", msg.Type).WithField("seq", msg.Seq)
			if msg.Error != nil {
				entry = entry.WithField("error", msg.Error.Message)
			}
			entry.Warn("dropped control message nobody waits for")
			continue
		}
		select {
		case cl.ch <- packet{msg, fds}:
		case <-cl.gone:
			closeFDs(fds)
		}
		cl.sending.Done()
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
