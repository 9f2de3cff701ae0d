package daemonapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// packetError is a packet that arrived but cannot be taken: too large,
// malformed JSON, unexpected ancillary data. The connection stays usable.
type packetError struct{ reason string }

func (e *packetError) Error() string { return "malformed control packet: " + e.reason }

// Unwrap gives the packet error its errdefs class.
func (e *packetError) Unwrap() error { return errdefs.ErrInvalidArgument }

// packetConn reads and writes control messages on a SOCK_SEQPACKET
// connection. One goroutine reads; writers are serialised.
type packetConn struct {
	conn *net.UnixConn
	rbuf []byte
	oob  []byte
	wmu  sync.Mutex
}

func newPacketConn(conn *net.UnixConn) *packetConn {
	return &packetConn{
		conn: conn,
		rbuf: make([]byte, MaxControlPacket),
		oob:  make([]byte, unix.CmsgSpace(maxControlFDs*4)),
	}
}

// read returns the next message and the fds that came with it, which the
// caller then owns. A *packetError means this packet was dropped (its fds
// closed) and the next read may succeed; any other error ends the
// connection (io.EOF when the peer closed it).
func (p *packetConn) read() (ControlMessage, []int, error) {
	n, oobn, flags, _, err := p.conn.ReadMsgUnix(p.rbuf, p.oob)
	fds, fdErr := parseRights(p.oob[:oobn])
	switch {
	case err != nil && oobn == 0:
		return ControlMessage{}, nil, err
	case err != nil && !errors.Is(err, io.EOF):
		closeFDs(fds)
		return ControlMessage{}, nil, err
	case err != nil:
		// A zero-length read reports io.EOF, but a closed connection
		// carries no ancillary data: this was an empty packet with fds.
		closeFDs(fds)
		return ControlMessage{}, nil, &packetError{"empty packet"}
	case fdErr != nil:
		closeFDs(fds)
		return ControlMessage{}, nil, &packetError{fdErr.Error()}
	case flags&unix.MSG_CTRUNC != 0:
		closeFDs(fds)
		return ControlMessage{}, nil, &packetError{fmt.Sprintf("more than %d fds", maxControlFDs)}
	case flags&unix.MSG_TRUNC != 0:
		closeFDs(fds)
		return ControlMessage{}, nil, &packetError{fmt.Sprintf("larger than %d bytes", MaxControlPacket)}
	}
	var msg ControlMessage
	if err := json.Unmarshal(p.rbuf[:n], &msg); err != nil {
		closeFDs(fds)
		return ControlMessage{}, nil, &packetError{fmt.Sprintf("invalid JSON: %v", err)}
	}
	if msg.Type == "" {
		closeFDs(fds)
		return ControlMessage{}, nil, &packetError{"no message type"}
	}
	return msg, fds, nil
}

// parseRights collects the fds of every SCM_RIGHTS message in oob. Other
// control messages are an error (after their fds, if any, were collected
// for closing).
func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	scms, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("unreadable ancillary data: %w", err)
	}
	var fds []int
	var bad error
	for _, scm := range scms {
		if scm.Header.Level != unix.SOL_SOCKET || scm.Header.Type != unix.SCM_RIGHTS {
			bad = fmt.Errorf("unexpected ancillary data (level %d, type %d)", scm.Header.Level, scm.Header.Type)
			continue
		}
		got, err := unix.ParseUnixRights(&scm)
		if err != nil {
			bad = fmt.Errorf("unreadable SCM_RIGHTS: %w", err)
			continue
		}
		fds = append(fds, got...)
	}
	return fds, bad
}

// write sends msg with fds (the caller keeps its own fds: the peer receives
// copies). ctx bounds the wait for room in the socket buffer.
func (p *packetConn) write(ctx context.Context, msg ControlMessage, fds ...int) error {
	b, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("failed to encode %s message: %w", msg.Type, err)
	}
	if len(b) > MaxControlPacket {
		return fmt.Errorf("%s message is %d bytes, more than %d: %w", msg.Type, len(b), MaxControlPacket, errdefs.ErrInvalidArgument)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	release := bindDeadline(ctx, p.conn.SetWriteDeadline)
	n, _, err := p.conn.WriteMsgUnix(b, oob, nil)
	release()
	if err != nil {
		return contextError(ctx, err)
	}
	if n != len(b) {
		return fmt.Errorf("short write of %s message (%d of %d bytes): %w", msg.Type, n, len(b), io.ErrShortWrite)
	}
	return nil
}

// aLongTimeAgo is a deadline that has passed: setting it wakes a blocked
// read or write at once.
var aLongTimeAgo = time.Unix(1, 0)

// bindDeadline makes a connection deadline follow ctx (its deadline, and
// its cancellation) until release is called, which clears the deadline.
func bindDeadline(ctx context.Context, set func(time.Time) error) (release func()) {
	if d, ok := ctx.Deadline(); ok {
		set(d)
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		set(aLongTimeAgo)
		close(fired)
	})
	return func() {
		if !stop() {
			// The func was started: let it finish, or it could set
			// its deadline after ours is cleared.
			<-fired
		}
		set(time.Time{})
	}
}

// contextError reports a connection timeout caused by ctx as ctx's error.
func contextError(ctx context.Context, err error) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if _, ok := ctx.Deadline(); ok {
		// The connection deadline can fire a moment before ctx's timer.
		return context.DeadlineExceeded
	}
	return err
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
