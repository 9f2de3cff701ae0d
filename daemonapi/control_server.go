package daemonapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/failover"
)

// ControlHandler is what a worker does with the requests of its controller.
type ControlHandler interface {
	// Attach starts serving the FUSE connection fd for the mount
	// req.MountID (whose layer was loaded through the HTTP API) and returns
	// once the connection is served: on a fresh connection once FUSE INIT
	// has been answered, with the INIT request and reply; on a takeover
	// (req.Resume) once the saved INIT was replayed and the kernel asked to
	// resend what the previous worker held, with that same state.
	//
	// On success the handler owns fd. On error it must neither keep nor
	// close fd: the server closes it. ctx ends with this call (or when
	// ServeControl stops): serving the mount must not depend on it.
	Attach(ctx context.Context, req AttachRequest, fd int) (failover.InitState, error)
}

// ConnectionCollector is implemented by a handler that can hand a
// re-adopting controller a copy of every connection it serves (collect).
// The returned fds are the server's to close once sent.
type ConnectionCollector interface {
	Collect(ctx context.Context) ([]HeldConnection, error)
}

// StderrReplacer is implemented by a handler that can make fd a new stderr
// and stdout of its process (stderr). On success the handler owns fd.
type StderrReplacer interface {
	ReplaceStderr(ctx context.Context, fd int) error
}

// Resender is implemented by a handler that can send FUSE_NOTIFY_RESEND
// on a mount it took over with DeferResend (resend).
type Resender interface {
	Resend(ctx context.Context, mountID string) error
}

const (
	// controlWriteTimeout bounds a reply's wait for room in the socket
	// buffer: a controller that stops reading loses its connection rather
	// than blocking the worker.
	controlWriteTimeout = 5 * time.Second
	// handoverTimeout bounds how long a new controller waits for the
	// session of one that has hung up to wind down.
	handoverTimeout = 2 * time.Second
	// maxInflight bounds the attach requests of one controller being
	// handled at once; further packets wait in the socket buffer.
	maxInflight = 16
)

// ServeControl admits controllers on l, one at a time, and hands their
// attach requests to h until ctx is cancelled or l is closed; it then closes
// l and the admitted connection, waits for the handler calls in flight and
// returns nil. Any other error to accept a connection is returned.
//
// A connection is admitted if its peer runs as root or as this process's
// uid, and no other controller is connected (one that has hung up is waited
// for briefly). A refused peer gets an error message, then the connection is
// closed.
func ServeControl(ctx context.Context, l *ControlListener, h ControlHandler) error {
	ctx, cancel := context.WithCancel(ctx)
	s := &controlServer{h: h}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer func() {
		cancel()
		stop()
		l.Close()
		s.wg.Wait()
	}()
	var backoff time.Duration
	for {
		conn, err := l.l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !isResourceShortage(err) {
				return fmt.Errorf("failed to accept on control socket %s: %w", l.path, err)
			}
			// Out of fds or memory: wait for some to be freed rather
			// than leave the worker without a control channel.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			log.G(ctx).WithError(err).WithField("retry_in", backoff).Warn("failed to accept controller")
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.admit(ctx, conn)
		}()
	}
}

func isResourceShortage(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) ||
		errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM)
}

type controlServer struct {
	h  ControlHandler
	wg sync.WaitGroup // every connection's goroutine

	mu     sync.Mutex
	active *controlSession
}

// controlSession is the connection of the admitted controller.
type controlSession struct {
	pc       *packetConn
	peerPID  int32
	readDone chan struct{} // closed once the session no longer reads
	inflight sync.WaitGroup
	slots    chan struct{}
}

// admit checks and claims a new connection, then serves it to its end.
func (s *controlServer) admit(ctx context.Context, conn *net.UnixConn) {
	defer conn.Close()
	pc := newPacketConn(conn)
	sess, err := s.check(ctx, pc)
	if err != nil {
		log.G(ctx).WithError(err).Warn("refused controller")
		s.send(ctx, pc, ControlMessage{Type: MessageError, Error: ptr(newErrorInfo(err))})
		return
	}
	s.run(log.WithLogger(ctx, log.G(ctx).WithField("peer_pid", sess.peerPID)), sess)
}

// check admits the peer of pc if its uid may control this worker and no
// other controller is connected.
func (s *controlServer) check(ctx context.Context, pc *packetConn) (*controlSession, error) {
	cred, err := checkPeer(pc.conn)
	if err != nil {
		return nil, err
	}
	return s.claim(ctx, pc, cred.Pid)
}

// claim makes pc the active session, or says why it cannot be.
func (s *controlServer) claim(ctx context.Context, pc *packetConn, pid int32) (*controlSession, error) {
	timer := time.NewTimer(handoverTimeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		cur := s.active
		if cur == nil {
			sess := &controlSession{
				pc:       pc,
				peerPID:  pid,
				readDone: make(chan struct{}),
				slots:    make(chan struct{}, maxInflight),
			}
			s.active = sess
			s.mu.Unlock()
			return sess, nil
		}
		s.mu.Unlock()
		// A controller that closed its end a moment ago (a restarted
		// snapshotter reconnecting) must not be refused because the old
		// session has not noticed yet.
		if !cur.hungUp() {
			return nil, fmt.Errorf("another controller (pid %d) is connected: %w", cur.peerPID, errdefs.ErrConflict)
		}
		select {
		case <-cur.readDone:
		case <-timer.C:
			return nil, fmt.Errorf("previous controller (pid %d) is still being disconnected: %w", cur.peerPID, errdefs.ErrConflict)
		case <-ctx.Done():
			return nil, fmt.Errorf("control server is stopping: %w", errdefs.ErrUnavailable)
		}
	}
}

// hungUp tells whether the peer of the session has closed its end.
func (c *controlSession) hungUp() bool {
	raw, err := c.pc.conn.SyscallConn()
	if err != nil {
		return true
	}
	hung := true
	raw.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		n, err := unix.Poll(pfd, 0)
		hung = err == nil && n > 0 && pfd[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
	})
	return hung
}

// run greets the controller and serves its requests until it hangs up or
// ctx ends.
func (s *controlServer) run(ctx context.Context, sess *controlSession) {
	stop := context.AfterFunc(ctx, func() { sess.pc.conn.Close() })
	defer func() {
		stop()
		sess.pc.conn.Close()
		s.mu.Lock()
		if s.active == sess {
			s.active = nil
		}
		s.mu.Unlock()
		close(sess.readDone)
		sess.inflight.Wait()
	}()
	log.G(ctx).Debug("controller connected")
	if err := s.send(ctx, sess.pc, ControlMessage{Type: MessageHello, Version: ControlVersion}); err != nil {
		log.G(ctx).WithError(err).Warn("failed to greet controller")
		return
	}
	for {
		msg, fds, err := sess.pc.read()
		var perr *packetError
		switch {
		case errors.As(err, &perr):
			log.G(ctx).WithError(err).Warn("rejected control packet")
			s.send(ctx, sess.pc, ControlMessage{Type: MessageError, Error: ptr(newErrorInfo(err))})
			continue
		case errors.Is(err, io.EOF):
			log.G(ctx).Debug("controller disconnected")
			return
		case err != nil:
			if ctx.Err() == nil {
				log.G(ctx).WithError(err).Warn("failed to read from controller")
			}
			return
		}
		if !s.dispatch(ctx, sess, msg, fds) {
			return
		}
	}
}

// dispatch answers one request, or starts answering it. It owns fds. It
// returns false once ctx has ended.
func (s *controlServer) dispatch(ctx context.Context, sess *controlSession, msg ControlMessage, fds []int) bool {
	reject := func(reply ControlMessage, err error) bool {
		closeFDs(fds)
		reply.Seq, reply.Error = msg.Seq, ptr(newErrorInfo(err))
		log.G(ctx).WithError(err).WithField("type", msg.Type).Warn("rejected control request")
		s.send(ctx, sess.pc, reply)
		return true
	}
	switch msg.Type {
	case MessageAttach:
		reply := ControlMessage{Type: MessageAttach, MountID: msg.MountID}
		if len(fds) != 1 {
			return reject(reply, fmt.Errorf("attach carries %d fds, not 1: %w", len(fds), errdefs.ErrInvalidArgument))
		}
		if err := ValidateMountID(msg.MountID); err != nil {
			return reject(reply, err)
		}
		if msg.DeferResend && msg.InitRequest == nil {
			return reject(reply, fmt.Errorf("defer_resend without INIT state to resume: %w", errdefs.ErrInvalidArgument))
		}
		select {
		case sess.slots <- struct{}{}:
		case <-ctx.Done():
			closeFDs(fds)
			return false
		}
		sess.inflight.Add(1)
		go func() {
			defer sess.inflight.Done()
			defer func() { <-sess.slots }()
			s.attach(ctx, sess, msg, fds[0])
		}()
		return true
	case MessageCollect:
		reply := ControlMessage{Type: MessageCollect, Last: true}
		if len(fds) != 0 {
			return reject(reply, fmt.Errorf("collect carries %d fds, not 0: %w", len(fds), errdefs.ErrInvalidArgument))
		}
		c, ok := s.h.(ConnectionCollector)
		if !ok {
			return reject(reply, fmt.Errorf("collect: %w", errdefs.ErrNotImplemented))
		}
		s.collect(ctx, sess, msg.Seq, c)
		return true
	case MessageStderr:
		reply := ControlMessage{Type: MessageStderr}
		if len(fds) != 1 {
			return reject(reply, fmt.Errorf("stderr carries %d fds, not 1: %w", len(fds), errdefs.ErrInvalidArgument))
		}
		r, ok := s.h.(StderrReplacer)
		if !ok {
			return reject(reply, fmt.Errorf("stderr: %w", errdefs.ErrNotImplemented))
		}
		if err := r.ReplaceStderr(ctx, fds[0]); err != nil {
			return reject(reply, err)
		}
		reply.Seq = msg.Seq
		if err := s.send(ctx, sess.pc, reply); err != nil {
			log.G(ctx).WithError(err).Warn("failed to send stderr reply")
		}
		return true
	case MessageResend:
		reply := ControlMessage{Type: MessageResend, MountID: msg.MountID}
		if len(fds) != 0 {
			return reject(reply, fmt.Errorf("resend carries %d fds, not 0: %w", len(fds), errdefs.ErrInvalidArgument))
		}
		if err := ValidateMountID(msg.MountID); err != nil {
			return reject(reply, err)
		}
		r, ok := s.h.(Resender)
		if !ok {
			return reject(reply, fmt.Errorf("resend: %w", errdefs.ErrNotImplemented))
		}
		if err := r.Resend(ctx, msg.MountID); err != nil {
			return reject(reply, err)
		}
		reply.Seq = msg.Seq
		if err := s.send(ctx, sess.pc, reply); err != nil {
			log.G(ctx).WithError(err).Warn("failed to send resend reply")
		}
		return true
	default:
		return reject(ControlMessage{Type: MessageError}, fmt.Errorf("message type %q is not handled: %w", msg.Type, errdefs.ErrNotImplemented))
	}
}

// attach hands fd to the handler and reports the outcome to the controller.
func (s *controlServer) attach(ctx context.Context, sess *controlSession, msg ControlMessage, fd int) {
	seq, mountID := msg.Seq, msg.MountID
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("mount_id", mountID))
	req := AttachRequest{MountID: mountID, DeferResend: msg.DeferResend, RecoverInit: msg.RecoverInit}
	if msg.InitRequest != nil || msg.InitReply != nil {
		req.Resume = &failover.InitState{Request: msg.InitRequest, Reply: msg.InitReply}
	}
	reply := ControlMessage{Type: MessageAttach, Seq: seq, MountID: mountID}
	st, err := s.h.Attach(ctx, req, fd)
	if err != nil {
		// Closed before the reply goes out, so that the controller
		// never sees an error while the worker still holds the fd.
		unix.Close(fd)
		log.G(ctx).WithError(err).Warn("failed to attach mount")
		reply.Error = ptr(newErrorInfo(err))
	} else {
		reply.InitRequest, reply.InitReply = st.Request, st.Reply
	}
	err = s.send(ctx, sess.pc, reply)
	if errdefs.IsInvalidArgument(err) && reply.Error == nil {
		// The mount is served, but its INIT state does not fit in a
		// packet: the controller must not wait for an answer that
		// never comes.
		err = s.send(ctx, sess.pc, ControlMessage{Type: MessageAttach, Seq: seq, MountID: mountID, Error: ptr(newErrorInfo(fmt.Errorf("INIT state of %d+%d bytes does not fit in a control message: %w", len(st.Request), len(st.Reply), errdefs.ErrInternal)))})
	}
	if err != nil {
		log.G(ctx).WithError(err).Warn("failed to send attach reply")
	}
}

// collect sends the controller a copy of every connection the handler
// serves, one message and fd each, then the closing message.
func (s *controlServer) collect(ctx context.Context, sess *controlSession, seq uint64, c ConnectionCollector) {
	conns, err := c.Collect(ctx)
	defer func() {
		for _, hc := range conns {
			unix.Close(hc.FD)
		}
	}()
	last := ControlMessage{Type: MessageCollect, Seq: seq, Last: true}
	if err != nil {
		last.Error = ptr(newErrorInfo(err))
	}
	for _, hc := range conns {
		msg := ControlMessage{Type: MessageCollect, Seq: seq, MountID: hc.MountID, InitRequest: hc.Init.Request, InitReply: hc.Init.Reply}
		if err := s.sendFDs(ctx, sess.pc, msg, hc.FD); err != nil {
			log.G(ctx).WithError(err).WithField("mount_id", hc.MountID).Warn("failed to hand a connection to the controller")
			last.Error = ptr(newErrorInfo(fmt.Errorf("mount %s: %w", hc.MountID, err)))
			break
		}
	}
	if err := s.send(ctx, sess.pc, last); err != nil {
		log.G(ctx).WithError(err).Warn("failed to send collect reply")
	}
	log.G(ctx).WithField("mounts", len(conns)).Info("connections collected by controller")
}

// send writes one message with the write timeout.
func (s *controlServer) send(ctx context.Context, pc *packetConn, msg ControlMessage) error {
	return s.sendFDs(ctx, pc, msg)
}

// sendFDs writes one message carrying copies of fds, with the write timeout.
func (s *controlServer) sendFDs(ctx context.Context, pc *packetConn, msg ControlMessage, fds ...int) error {
	ctx, cancel := context.WithTimeout(ctx, controlWriteTimeout)
	defer cancel()
	return pc.write(ctx, msg, fds...)
}

func ptr[T any](v T) *T { return &v }
