package lazyfs

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	stdlog "log"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/metrics"
)

// Connection settings. They are part of the INIT reply, which a successor
// must reproduce byte for byte (FAILOVER.md rule 3): a successor takes its
// request size from the saved reply (connSize), so that connections
// initialised by an older worker with other sizes are carried over.
const (
	// maxWrite is the request size of a fresh connection. It also bounds
	// READ: the kernel negotiates max_pages from it, and a 1 MiB read(2)
	// is then one FUSE round trip instead of eight of 128 KiB (a cold
	// sequential read spent most of its time in those round trips on a
	// busy machine). 1 MiB is the kernel's and go-fuse's maximum.
	maxWrite = 1 << 20
	// maxReadAhead is what we accept; the kernel offers its own window
	// (128 KiB by default) and the reply is the smaller of the two.
	maxReadAhead = 1 << 20
	// Worker releases before max_write grew to 1 MiB answered INIT
	// with 128 KiB for both (oldMaxWrite): their connections are resumed
	// with that size.
	oldMaxWrite   = 128 << 10
	maxBackground = 16
	// disabledCaps: no passthrough (backing ids registered by a dead
	// worker would stay in the kernel).
	disabledCaps = fuse.CAP_PASSTHROUGH

	// xattrReplyMax is the largest reply other than a READ: an xattr value
	// or list of up to 64 KiB.
	xattrReplyMax = 64 << 10
	// bufSlack is what a buffer holds besides a request's or reply's
	// payload (headers and an op's input): a page, as libfuse uses.
	bufSlack = 4096

	defaultReaders = 4
	minReaders     = 2
)

// ServeOptions configure Serve.
type ServeOptions struct {
	// Readers is the number of goroutines reading requests; each serves
	// one request at a time. 0 means 4; fewer than 2 are raised to 2,
	// since an INTERRUPT only takes effect if a reader is free to read it.
	Readers int
	// OnInit, if set, is called once the connection is being served,
	// before any request other than INIT is read: on a fresh mount after
	// the INIT reply was written, with the raw INIT exchange to keep for a
	// later takeover; on a takeover (Resume) after the replay and the
	// resend, with the resumed state.
	OnInit func(failover.InitState)
	// Resume takes over a connection another server initialised: its
	// saved INIT is replayed locally (Serve fails with
	// errdefs.ErrFailedPrecondition if the reply would differ), then
	// FUSE_NOTIFY_RESEND is sent before the first read if the kernel
	// supports it, so that requests the previous server read but did not
	// answer are answered now.
	Resume *failover.InitState
	// DeferResend, with Resume, skips the resend: the previous server is
	// still alive (a planned replacement) and answers what it read; the
	// caller sends NotifyResend once it is gone.
	DeferResend bool
	// RecoverInit, on a fresh mount, sends FUSE_NOTIFY_RESEND before
	// reading INIT: set it when a previous server may have read INIT and
	// died before answering it, which would otherwise leave the mount
	// hanging. Errors (kernels without RESEND) are only logged.
	RecoverInit bool
	// Debug logs every request and reply (go-fuse's debug output).
	Debug bool
}

// Serve answers FUSE requests on fd, a /dev/fuse connection mounted with
// failover.Mount, with fs, until the connection ends or ctx is cancelled.
//
// It puts fd in non-blocking mode (a flag shared with every dup of it) so
// that readers can be stopped; it never closes fd: the caller and the
// supervisor own it. Requests in flight when ctx is cancelled are answered
// before Serve returns; requests not read yet stay queued in the kernel for
// the next server of the connection.
//
// Serve returns nil when the connection ends (unmounted or aborted),
// ctx.Err() when stopped, and an error if it cannot serve.
func Serve(ctx context.Context, fd int, fs fuse.RawFileSystem, opts ServeOptions) error {
	readers := max(cmp.Or(opts.Readers, defaultReaders), minReaders)

	size := connSize{maxWrite: maxWrite, maxReadAhead: maxReadAhead}
	if opts.Resume != nil {
		var err error
		if size, err = resumedSize(*opts.Resume); err != nil {
			return err
		}
	}
	ps := fuse.NewProtocolServer(fs, mountOptions(ctx, opts.Debug, size))
	if opts.Resume != nil {
		// Before touching fd: a refused takeover leaves the
		// connection exactly as it was.
		if err := replayInit(ps, *opts.Resume, size.outBufSize()); err != nil {
			return err
		}
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return fmt.Errorf("failed to make FUSE fd %d non-blocking: %w", fd, err)
	}
	w, err := newWaker()
	if err != nil {
		return err
	}
	defer w.close()
	defer context.AfterFunc(ctx, w.signal)()

	s := &server{fd: fd, ps: ps, w: w, size: size}
	s.q, _ = fs.(quarantiner)
	var st failover.InitState
	switch {
	case opts.Resume != nil:
		st = *opts.Resume
		switch {
		case opts.DeferResend:
		case st.SupportsResend():
			if err := NotifyResend(fd); err != nil {
				return err
			}
		default:
			metrics.TakeoversWithoutResend.Inc()
			log.G(ctx).Warn("kernel lacks FUSE_NOTIFY_RESEND: requests read by the previous server stay unanswered")
		}
	default:
		if opts.RecoverInit {
			if err := NotifyResend(fd); err != nil {
				log.G(ctx).WithError(err).Warn("failed to recover an unanswered INIT")
			}
		}
		if st, err = s.serveInit(ctx); err != nil {
			return s.result(ctx, err)
		}
	}
	if opts.OnInit != nil {
		opts.OnInit(st)
	}

	errs := make([]error, readers)
	var wg sync.WaitGroup
	for i := range readers {
		wg.Go(func() {
			errs[i] = s.readLoop(ctx)
			// One reader ending ends them all: the connection is
			// gone, Serve was stopped, or it cannot go on.
			w.signal()
		})
	}
	wg.Wait()
	for _, err := range errs {
		if !errors.Is(err, errStopped) && !errors.Is(err, errConnectionEnded) {
			return err
		}
	}
	return s.result(ctx, errors.Join(errs...))
}

// mountOptions are the go-fuse settings every server of a connection must
// share (see the constants above).
func mountOptions(ctx context.Context, debug bool, size connSize) *fuse.MountOptions {
	return &fuse.MountOptions{
		MaxWrite:             size.maxWrite,
		MaxReadAhead:         size.maxReadAhead,
		MaxBackground:        maxBackground,
		DisabledCapabilities: disabledCaps,
		// Symlinks never change: let the kernel cache their targets.
		EnableSymlinkCaching: true,
		Name:                 "lazyfs",
		Debug:                debug,
		Logger:               stdlog.New(fuseLog{ctx: ctx, debug: debug}, "", 0),
	}
}

var (
	// errStopped ends a reader when Serve is stopped.
	errStopped = errors.New("stopped")
	// errConnectionEnded ends a reader when the kernel ended the
	// connection (ENODEV: unmounted or aborted).
	errConnectionEnded = errors.New("FUSE connection ended")
)

// server is one Serve call's state shared by its readers.
type server struct {
	fd int
	ps *fuse.ProtocolServer
	w  *waker
	q  quarantiner // nil: fs cannot be quarantined
	// size is the connection's negotiated request size.
	size connSize
}

// result maps how the readers ended to Serve's return value.
func (s *server) result(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, errConnectionEnded):
		return nil
	case errors.Is(err, errStopped):
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return nil
	}
	return err
}

// serveInit reads and answers the INIT request of a fresh connection.
func (s *server) serveInit(ctx context.Context) (failover.InitState, error) {
	in := make([]byte, s.size.inBufSize())
	n, err := s.read(in)
	if err != nil {
		return failover.InitState{}, err
	}
	req := in[:n]
	if op := binary.NativeEndian.Uint32(req[opcodeOffset:]); op != opInit {
		return failover.InitState{}, fmt.Errorf("first request has opcode %d, not INIT: the connection was initialised before (resume it instead): %w", op, errdefs.ErrFailedPrecondition)
	}
	out := make([]byte, s.size.outBufSize())
	m, status := s.ps.HandleRequest([][]byte{req}, [][]byte{out})
	if !status.Ok() || m < outHeaderSize {
		return failover.InitState{}, fmt.Errorf("failed to handle INIT: %v", status)
	}
	reply := out[:m]
	if err := s.write(ctx, reply); err != nil {
		return failover.InitState{}, err
	}
	if errno := int32(binary.NativeEndian.Uint32(reply[4:])); errno != 0 {
		return failover.InitState{}, fmt.Errorf("INIT refused: %w", unix.Errno(-errno))
	}
	return failover.InitState{Request: slices.Clone(req), Reply: slices.Clone(reply)}, nil
}

// readLoop reads, handles and answers requests until the connection ends,
// Serve is stopped, or reading fails.
func (s *server) readLoop(ctx context.Context) error {
	in, err := newRequestBuf(s.size.inBufSize())
	if err != nil {
		return err
	}
	defer in.free()
	// Replies up to 64 KiB go through the reader's own buffer; a larger
	// READ borrows one from readReplies for its reply only.
	out, err := newRequestBuf(min(s.size.outBufSize(), xattrReplyMax+bufSlack))
	if err != nil {
		return err
	}
	defer out.free()
	for {
		n, err := s.read(in.b)
		if err != nil {
			return err
		}
		if err := s.handle(ctx, in.b[:n], out.b); err != nil {
			return err
		}
	}
}

// read returns the next request, waiting for one without blocking in
// read(2) so that Serve can be stopped.
func (s *server) read(buf []byte) (int, error) {
	for {
		if s.w.stopped() {
			return 0, errStopped
		}
		n, err := unix.Read(s.fd, buf)
		switch {
		case err == nil && n >= inHeaderSize:
			return n, nil
		case err == nil:
			return 0, fmt.Errorf("short FUSE request of %d bytes", n)
		case errors.Is(err, unix.EAGAIN):
			if err := s.w.wait(s.fd); err != nil {
				return 0, err
			}
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.ENOENT):
			// ENOENT: the request was interrupted before we got it.
		case errors.Is(err, unix.ENODEV):
			return 0, errConnectionEnded
		default:
			return 0, fmt.Errorf("failed to read FUSE request: %w", err)
		}
	}
}

// handle answers one request. go-fuse returns no reply for FORGET and for
// an INTERRUPT of a request in flight here; any other INTERRUPT gets an
// EAGAIN reply that must be written, so the kernel sends it again later.
func (s *server) handle(ctx context.Context, req, out []byte) error {
	if binary.NativeEndian.Uint64(req[8:])&resendBit != 0 {
		metrics.FuseRequestsResent.Inc()
	}
	if s.refusedByQuarantine(req) {
		// A forged layer: not another byte of it (quarantine.go).
		metrics.FuseQuarantineRefusals.Inc()
		return s.write(ctx, out[:errorReply(out, req, unix.EIO)])
	}
	if size := readSize(req); size > len(out)-bufSlack {
		big := readReplies.Get()
		defer readReplies.Put(big)
		out = big[:min(len(big), s.size.outBufSize())]
	}
	n, status := s.ps.HandleRequest([][]byte{req}, [][]byte{out})
	if !status.Ok() {
		// go-fuse could not parse the request: answer it anyway, or
		// its caller would wait forever.
		log.G(ctx).WithField("status", status).Error("failed to handle FUSE request")
		n = errorReply(out, req, unix.EIO)
	}
	if n == 0 {
		return nil
	}
	return s.write(ctx, out[:n])
}

// errorReply writes a reply carrying errno for req into out.
func errorReply(out, req []byte, errno unix.Errno) int {
	binary.NativeEndian.PutUint32(out[0:], outHeaderSize)
	binary.NativeEndian.PutUint32(out[4:], uint32(-int32(errno)))
	copy(out[8:16], req[8:16]) // unique
	return outHeaderSize
}

// write sends one reply.
func (s *server) write(ctx context.Context, reply []byte) error {
	for {
		_, err := unix.Write(s.fd, reply)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOENT):
			// The request was interrupted or aborted meanwhile.
			return nil
		case errors.Is(err, unix.ENODEV):
			return errConnectionEnded
		default:
			// The kernel refused this reply (malformed); the next
			// request may be fine.
			log.G(ctx).WithError(err).Error("failed to write FUSE reply")
			return nil
		}
	}
}

// fuseLog passes go-fuse's log lines (debug traces, complaints about
// requests, handler panics) to the context's logger.
type fuseLog struct {
	ctx   context.Context
	debug bool
}

func (l fuseLog) Write(p []byte) (int, error) {
	e := log.G(l.ctx).WithField("detail", strings.TrimSpace(string(p)))
	if l.debug {
		e.Info("go-fuse")
	} else {
		e.Warn("go-fuse")
	}
	return len(p), nil
}
