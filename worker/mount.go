package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/cache"
	"github.com/lazyfs/lazyfs/chunks"
	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/lazyfs"
)

// bigTOCEntries is the TOC size from which a load returns freed memory to
// the kernel at once.
const bigTOCEntries = 50_000

// mount is one layer a worker loaded and, once attached, serves.
type mount struct {
	w         *Worker
	req       daemonapi.LoadLayerRequest
	layerInfo daemonapi.LayerInfo
	fs        *lazyfs.FS
	reader    *chunks.Reader
	// life bounds the mount's background work (sequential prefetch, the
	// prefetch of its prioritized files): end() cancels it when the mount
	// is detached, or the worker stops.
	life context.Context
	end  context.CancelFunc
	// prioritized are the chunks before the layer's eStargz prefetch
	// landmark, fetched once the mount is first served; nil when the
	// layer has none (or its no-prefetch landmark).
	prioritized []chunks.Chunk
	prefetching sync.Once
	// chunks are the layer's chunks (the tree's own slice, not a copy),
	// which a proof stores in the chunk cache as the blob streams by.
	chunks []chunks.Chunk

	mu    sync.Mutex
	state daemonapi.MountState
	// verification and diffID are the snapshotter's verdict on the
	// layer's identity, reported by Info.
	verification daemonapi.Verification
	diffID       string
	fd           int                // the worker's copy of the /dev/fuse fd; -1 until attached
	init         failover.InitState // the connection's INIT exchange, once served
	cancel       context.CancelFunc // stops the read loop
	stopped      chan struct{}      // closed when the read loop has returned
}

func newMount(w *Worker, req daemonapi.LoadLayerRequest, loaded *loadedLayer) *mount {
	layer, tree := loaded.layer, loaded.tree
	if loaded.entries >= bigTOCEntries {
		// Decoding a big TOC allocates several times what the tree keeps;
		// hand that back to the kernel now rather than when the runtime
		// gets to it, so the worker's RSS reflects what it really holds.
		debug.FreeOSMemory()
	}

	w.recordLayer(layer.BlobDigest, tree.Chunks())
	opts := w.opts.Chunks
	opts.LayerDigest = layer.BlobDigest
	// The layer-wide layout lets a read of a small file fetch its
	// neighbours in the blob with it (read-ahead).
	opts.Layout = chunks.NewLayout(tree.Chunks())
	opts.Registry = registryOf(req.ImageRef)
	// Background work ends with the mount (detach) or the worker.
	life, end := context.WithCancel(w.ctx)
	opts.Context = life
	reader := chunks.NewReader(loaded.src, opts)
	var prioritized []chunks.Chunk
	if off, ok := loaded.landmark.offset(); ok && w.opts.Prefetch {
		prioritized = opts.Layout.Before(off)
	}
	// Every FUSE op's ctx derives from this one: its logger names the layer,
	// and the worker's shutdown cancels reads in flight.
	fctx := log.WithLogger(w.ctx, log.G(w.ctx).
		WithField("mount_id", req.MountID).
		WithField("layer_digest", req.LayerDigest).
		WithField("image_ref", req.ImageRef).
		WithField("mountpoint", req.Mountpoint))
	return &mount{
		w:   w,
		req: req,
		layerInfo: daemonapi.LayerInfo{
			MountID:     req.MountID,
			LayerDigest: req.LayerDigest,
			TOCDigest:   req.TOCDigest,
			BlobSize:    layer.BlobSize,
			Entries:     loaded.entries,
		},
		fs:           lazyfs.NewFS(fctx, tree, reader),
		reader:       reader,
		life:         log.WithLogger(life, log.G(fctx)),
		end:          end,
		prioritized:  prioritized,
		chunks:       tree.Chunks(),
		state:        daemonapi.MountLoaded,
		verification: daemonapi.Unverified,
		fd:           -1,
	}
}

// recordLayer keeps the layer's chunk list in the chunk cache (once per
// layer). Serving works without it: only the snapshot's Usage misses it.
func (w *Worker) recordLayer(layer digest.Digest, cs []chunks.Chunk) {
	if w.opts.Cache == nil {
		return
	}
	refs := make([]cache.ChunkRef, len(cs))
	for i, c := range cs {
		refs[i] = cache.ChunkRef{Digest: c.Digest, Size: c.Size}
	}
	if err := w.opts.Cache.PutLayer(w.ctx, layer, refs); err != nil {
		log.G(w.ctx).WithError(err).WithField("layer_digest", layer).Warn("failed to record the layer's chunks in the cache")
	}
}

func (m *mount) info() daemonapi.MountInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	return daemonapi.MountInfo{
		ID:          m.req.MountID,
		LayerDigest: m.req.LayerDigest,
		ImageRef:    m.req.ImageRef,
		TOCDigest:   m.req.TOCDigest,
		Mountpoint:  m.req.Mountpoint,
		State:       m.state,

		Verification: m.verification,
		DiffID:       m.diffID,
	}
}

// serve starts the read loop on fd and waits until the connection is served:
// FUSE INIT answered on a fresh connection, or the saved INIT replayed on a
// takeover (req.Resume). On success the mount owns fd. On error fd is the
// caller's again, as daemonapi.ControlHandler requires (its server closes
// it): the read loop has stopped and the mount can be attached again.
func (m *mount) serve(ctx context.Context, fd int, req daemonapi.AttachRequest) (_ failover.InitState, retErr error) {
	m.mu.Lock()
	if m.cancel != nil {
		m.mu.Unlock()
		return failover.InitState{}, fmt.Errorf("mount %s is attached already: %w", m.req.MountID, errdefs.ErrAlreadyExists)
	}
	sctx, cancel := context.WithCancel(m.w.ctx)
	stopped := make(chan struct{})
	m.fd, m.cancel, m.stopped = fd, cancel, stopped
	m.mu.Unlock()
	defer func() {
		if retErr == nil {
			return
		}
		// Serve stops promptly once cancelled; the fd must not be in
		// use when the caller closes it.
		cancel()
		<-stopped
		m.mu.Lock()
		m.fd, m.cancel, m.stopped = -1, nil, nil
		m.state = daemonapi.MountLoaded
		m.mu.Unlock()
	}()

	inited := make(chan failover.InitState, 1)
	serveErr := make(chan error, 1)
	go func() {
		defer close(stopped)
		err := lazyfs.Serve(sctx, fd, m.fs, lazyfs.ServeOptions{
			Readers:     m.w.opts.FuseReaders,
			OnInit:      func(s failover.InitState) { inited <- s },
			Resume:      req.Resume,
			DeferResend: req.DeferResend,
			RecoverInit: req.RecoverInit,
		})
		serveErr <- err
		m.mu.Lock()
		if err != nil && !errors.Is(err, context.Canceled) {
			m.state = daemonapi.MountFailed
			log.G(sctx).WithError(err).WithField("mount_id", m.req.MountID).Error("FUSE read loop failed")
		}
		m.mu.Unlock()
	}()

	served := func(s failover.InitState) failover.InitState {
		m.mu.Lock()
		m.state, m.init = daemonapi.MountServing, s
		m.mu.Unlock()
		return s
	}
	select {
	case s := <-inited:
		return served(s), nil
	case err := <-serveErr:
		select {
		case s := <-inited: // answered INIT, then the connection ended
			return served(s), nil
		default:
		}
		if err == nil {
			err = errors.New("connection ended")
		}
		if errdefs.IsFailedPrecondition(err) {
			// A refused takeover: this worker's INIT reply differs.
			return failover.InitState{}, fmt.Errorf("mount %s: %w", m.req.MountID, err)
		}
		return failover.InitState{}, fmt.Errorf("mount %s ended before FUSE INIT: %w: %w", m.req.MountID, err, errdefs.ErrUnavailable)
	case <-ctx.Done():
		return failover.InitState{}, fmt.Errorf("mount %s: no FUSE INIT: %w", m.req.MountID, ctx.Err())
	}
}

// held returns a copy of the mount's connection and its INIT state, for a
// controller that collects them; ok is false while it is not served.
func (m *mount) held() (daemonapi.HeldConnection, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fd < 0 || m.state != daemonapi.MountServing {
		return daemonapi.HeldConnection{}, false, nil
	}
	// Duplicated under the lock: stopServing cannot close m.fd meanwhile.
	fd, err := unix.FcntlInt(uintptr(m.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return daemonapi.HeldConnection{}, false, fmt.Errorf("mount %s: failed to duplicate its FUSE fd: %w", m.req.MountID, err)
	}
	return daemonapi.HeldConnection{MountID: m.req.MountID, FD: fd, Init: m.init}, true, nil
}

// resend asks the kernel to send again what the mount's previous server
// read without answering (a planned replacement, once it is gone).
func (m *mount) resend() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fd < 0 || m.state != daemonapi.MountServing {
		return fmt.Errorf("mount %s is not served: %w", m.req.MountID, errdefs.ErrFailedPrecondition)
	}
	if !m.init.SupportsResend() {
		return fmt.Errorf("mount %s: kernel lacks FUSE_NOTIFY_RESEND: %w", m.req.MountID, errdefs.ErrNotImplemented)
	}
	return lazyfs.NotifyResend(m.fd)
}

// stopServing stops the read loop, waiting at most wait for it, and closes
// the worker's copy of the fd once the loop has returned.
func (m *mount) stopServing(wait time.Duration) {
	m.mu.Lock()
	cancel, stopped, fd := m.cancel, m.stopped, m.fd
	m.fd = -1
	m.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case <-stopped:
		if fd >= 0 {
			unix.Close(fd)
		}
	case <-time.After(wait):
		// Closing now could hand the fd number to another file while a
		// reader still uses it: close it when the loop is really done.
		log.G(m.w.ctx).WithField("mount_id", m.req.MountID).Warn("FUSE read loop did not stop in time; closing its fd when it does")
		go func() {
			<-stopped
			if fd >= 0 {
				unix.Close(fd)
			}
		}()
	}
}
