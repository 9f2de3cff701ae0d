// Package worker is the core of lazyfsd: it loads layers (TOC from the disk
// store or the registry), serves each attached /dev/fuse fd with the lazyfs
// filesystem, and answers the daemonapi control and HTTP channels.
package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/cache"
	"github.com/lazyfs/lazyfs/chunks"
	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/layout"
	"github.com/lazyfs/lazyfs/lazyfs"
	"github.com/lazyfs/lazyfs/remote"
	"github.com/lazyfs/lazyfs/toc"
)

// Options configure a worker; cmd/lazyfsd fills them from its flags.
type Options struct {
	ID       string
	Version  string
	Root     string // the snapshotter root: TOCs are kept in <root>/tocs
	Resolver *remote.Resolver
	Limits   toc.Limits
	// Chunks configures every layer's reader. Its Memory and Scheduler are
	// the worker's, shared by all its layers (New creates them when nil:
	// one memory budget, MemoryCacheSize, and one limit per registry).
	Chunks chunks.Options
	// Prefetch fetches the prioritized files of each layer (those before
	// its eStargz prefetch landmark) when it is first served.
	Prefetch bool
	// Cache, if set, is the node's chunk cache (also Chunks.Disk): each
	// loaded layer's chunk list is recorded there, so that the snapshotter
	// can report the layer's cached bytes.
	Cache        *cache.Store
	FuseReaders  int
	ExitWhenIdle bool          // exit once no mount is left (after IdleTimeout)
	IdleTimeout  time.Duration // with ExitWhenIdle: how long to stay idle first; 0 exits on the last detach
	AttachWait   time.Duration // bound on waiting for FUSE INIT after attach
	// ProofRate bounds how fast a proof reads a blob, in bytes per second
	// ([fetch] background_rate); 0 is no bound.
	ProofRate int64
	// TOCTailBytes is how much of a blob's end the first request of a
	// layer asks for (0: DefaultTOCTailBytes).
	TOCTailBytes int
}

// DefaultTOCTailBytes is how much of a blob's end loading a layer asks for
// with its first request: the footer and a compressed TOC of up to about
// 60 KiB (a layer of a thousand files or so) come in one round trip; a
// bigger TOC costs one more request, for exactly the part the tail lacks.
// A layer whose TOC is smaller pays with the end of its last file's data,
// which the first command rarely needs: at most this much per layer. Measured
// (bench-e2e, 3 layers): a 256 KiB tail cost 0.65 MiB more registry bytes
// for pull + first command than the three requests it replaced, while the
// second request of a big TOC is mostly hidden: the layers after the first
// are resolved ahead (ahead.go), in the background.
const DefaultTOCTailBytes = 64 << 10

// tailBytes is the size of the tail a layer's load asks for.
func (w *Worker) tailBytes() int {
	n := w.opts.TOCTailBytes
	if n <= 0 {
		n = DefaultTOCTailBytes
	}
	return min(n, remote.MaxTailBytes)
}

// Worker serves layers. It implements daemonapi.Backend,
// daemonapi.ControlHandler, daemonapi.ConnectionCollector and
// daemonapi.Resender.
type Worker struct {
	opts  Options
	start time.Time
	store *toc.Store
	ctx   context.Context // root of every FUSE op; cancelled at shutdown
	stop  context.CancelFunc
	done  chan struct{} // closed when the worker should exit
	once  sync.Once

	// background tracks the mounts' prefetch goroutines.
	background sync.WaitGroup

	// ahead holds the layers of an image resolved ahead of their load.
	ahead *ahead

	mu     sync.Mutex
	mounts map[string]*mount
	idle   idleState // under mu
}

// New creates a worker; ctx carries its logger and bounds its life.
func New(ctx context.Context, opts Options) (*Worker, error) {
	if opts.AttachWait <= 0 {
		opts.AttachWait = 10 * time.Second
	}
	if opts.FuseReaders < 2 {
		opts.FuseReaders = 2
	}
	if opts.Chunks.Memory == nil {
		size := opts.Chunks.MemoryCacheSize
		switch {
		case size == 0:
			size = chunks.DefaultMemoryCacheSize
		case size < 0:
			size = 0
		}
		opts.Chunks.Memory = chunks.NewMemory(size)
	}
	if opts.Chunks.Scheduler == nil {
		opts.Chunks.Scheduler = chunks.NewScheduler(chunks.SchedulerOptions{})
	}
	store, err := toc.NewStore(layout.Root(opts.Root).TOCs())
	if err != nil {
		return nil, err
	}
	wctx, stop := context.WithCancel(ctx)
	w := &Worker{
		opts:   opts,
		start:  time.Now(),
		store:  store,
		ctx:    wctx,
		stop:   stop,
		done:   make(chan struct{}),
		mounts: map[string]*mount{},
		ahead:  newAhead(),
	}
	if opts.ExitWhenIdle && opts.IdleTimeout > 0 {
		// A worker whose first layer never comes (its load failed in the
		// snapshotter, or the snapshotter died) must not live forever.
		w.idleFrom(ctx)
	}
	return w, nil
}

// Done is closed when the worker was asked to exit or became idle.
func (w *Worker) Done() <-chan struct{} { return w.done }

// Close stops serving every mount.
func (w *Worker) Close() {
	w.stop()
	w.mu.Lock()
	mounts := make([]*mount, 0, len(w.mounts))
	for _, m := range w.mounts {
		mounts = append(mounts, m)
	}
	w.mu.Unlock()
	for _, m := range mounts {
		m.stopServing(time.Second)
	}
	// Prefetches end soon after the worker's context: their requests
	// are cancelled with it.
	w.background.Wait()
}

// Info describes the worker and its mounts.
func (w *Worker) Info(ctx context.Context) (daemonapi.DaemonInfo, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	info := daemonapi.DaemonInfo{
		ID:        w.opts.ID,
		PID:       os.Getpid(),
		Version:   w.opts.Version,
		State:     daemonapi.DaemonRunning,
		StartTime: w.start,
	}
	// Asked to exit or idle with ExitWhenIdle: the process is on its way
	// out even though the API still answers.
	select {
	case <-w.done:
		info.State = daemonapi.DaemonStopping
	default:
	}
	for _, m := range w.mounts {
		info.Mounts = append(info.Mounts, m.info())
	}
	return info, nil
}

// LoadLayer loads, verifies and keeps a layer's TOC and prepares the
// filesystem that an attach will serve. A kept TOC is used without the
// registry, which is what lets a restarted snapshotter mount its layers again
// while the registry is down.
func (w *Worker) LoadLayer(ctx context.Context, req daemonapi.LoadLayerRequest) (daemonapi.LayerInfo, error) {
	ctx = log.WithLogger(ctx, log.G(ctx).
		WithField("mount_id", req.MountID).
		WithField("layer_digest", req.LayerDigest).
		WithField("image_ref", req.ImageRef))
	layerDigest, err := digest.Parse(req.LayerDigest)
	if err != nil {
		return daemonapi.LayerInfo{}, fmt.Errorf("layer digest %q: %v: %w", req.LayerDigest, err, errdefs.ErrInvalidArgument)
	}
	tocDigest, err := digest.Parse(req.TOCDigest)
	if err != nil {
		return daemonapi.LayerInfo{}, fmt.Errorf("toc digest %q: %v: %w", req.TOCDigest, err, errdefs.ErrInvalidArgument)
	}

	w.mu.Lock()
	if m, ok := w.mounts[req.MountID]; ok {
		w.mu.Unlock()
		if sameRequest(m.req, req) {
			return m.layerInfo, nil // a retried request
		}
		return daemonapi.LayerInfo{}, fmt.Errorf("mount %s: %w", req.MountID, errdefs.ErrAlreadyExists)
	}
	w.idle.loading++
	w.mu.Unlock()
	defer w.loaded()
	// A pull waits on this load (containerd prepares the image's layers
	// one after the other): the worker's background work, the proofs that
	// stream whole blobs, stands aside for it as for a container's read,
	// and stays aside for the moment between two loads of the pull.
	defer w.opts.Chunks.Scheduler.ReadStarted(registryOf(req.ImageRef))()

	loaded, err := w.loadTOC(ctx, req.ImageRef, layerDigest, tocDigest, nextLayers(req))
	if err == nil {
		return w.addMount(ctx, req, newMount(w, req, loaded))
	}
	// The worker's own log says why, at a level operators keep: the
	// snapshotter only sees that the layer fell back.
	var refused *toc.RefusedError
	if errors.As(err, &refused) || errdefs.IsInvalidArgument(err) {
		log.G(ctx).WithError(err).Warn("layer refused for lazy loading")
	} else {
		log.G(ctx).WithError(err).Error("failed to load layer")
	}
	return daemonapi.LayerInfo{}, err
}

// nextLayers are the layers of req's image to resolve ahead: those its
// request lists, but not its own. daemonapi validated them.
func nextLayers(req daemonapi.LoadLayerRequest) []digest.Digest {
	var next []digest.Digest
	for _, s := range req.NextLayers {
		if d, err := digest.Parse(s); err == nil && s != req.LayerDigest {
			next = append(next, d)
		}
	}
	return next
}

// sameRequest reports whether a and b ask for the same load: a retried
// request.
func sameRequest(a, b daemonapi.LoadLayerRequest) bool {
	return a.MountID == b.MountID && a.ImageRef == b.ImageRef && a.LayerDigest == b.LayerDigest &&
		a.TOCDigest == b.TOCDigest && a.Mountpoint == b.Mountpoint && slices.Equal(a.NextLayers, b.NextLayers)
}

// addMount records a loaded layer under its mount id.
func (w *Worker) addMount(ctx context.Context, req daemonapi.LoadLayerRequest, m *mount) (daemonapi.LayerInfo, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.mounts[req.MountID]; ok {
		return daemonapi.LayerInfo{}, fmt.Errorf("mount %s: %w", req.MountID, errdefs.ErrAlreadyExists)
	}
	w.mounts[req.MountID] = m
	log.G(ctx).WithField("entries", m.layerInfo.Entries).Info("layer loaded")
	return m.layerInfo, nil
}

// loadedLayer is a layer whose TOC was verified, validated and turned into
// the tree the worker serves.
type loadedLayer struct {
	layer *toc.Layer // without its TOC: the tree holds what serving needs
	tree  *lazyfs.Tree
	src   chunks.Source
	// entries is the number of TOC entries; landmark the layer's eStargz
	// prefetch landmark.
	entries  int
	landmark landmark
}

// loadTOC returns the layer's tree, from the TOC kept in the store when it
// was kept before, else from the registry (and then keeps it). The TOC is
// decoded straight into the tree, entry by entry: its decoded entries are
// never held together (a layer of 300,000 files would cost about 125 MiB
// more at once). A layer fetched from the registry is a pull's: the
// image's next layers are resolved ahead meanwhile.
func (w *Worker) loadTOC(ctx context.Context, ref string, layerDigest, tocDigest digest.Digest, next []digest.Digest) (*loadedLayer, error) {
	sink := &treeSink{}
	layer, err := w.store.GetTo(tocDigest, w.opts.Limits, sink)
	if err == nil && layer.BlobDigest == layerDigest {
		log.G(ctx).Debug("using the kept TOC")
		return sink.finish(layer, &lazyBlob{resolver: w.opts.Resolver, ref: ref, dgst: layerDigest, size: layer.BlobSize})
	}
	if err != nil && !errdefs.IsNotFound(err) {
		log.G(ctx).WithError(err).Warn("kept TOC unusable; fetching it again")
	}
	if len(next) > 0 {
		w.ahead.start(w.ctx, w.opts.Resolver, ref, next, w.tailBytes(), w.opts.Limits)
	}
	blob, tail, ok := w.ahead.take(ctx, layerDigest)
	if !ok {
		// One request answers the blob's size, its footer and (mostly)
		// its TOC; a bigger TOC costs one more for what the tail lacks.
		if blob, tail, err = w.opts.Resolver.BlobTail(ctx, ref, layerDigest, w.tailBytes()); err != nil {
			return nil, err
		}
	} else {
		log.G(ctx).Debug("footer and TOC resolved ahead")
	}
	sink = &treeSink{}
	layer, err = toc.FetchTo(ctx, toc.WithTail(blob, tail), layerDigest, tocDigest, w.opts.Limits, sink)
	if err != nil {
		return nil, err
	}
	if err := w.store.Put(layer); err != nil {
		// Serving works without it; only a later remount needs the registry.
		log.G(ctx).WithError(err).Warn("failed to keep the TOC on disk")
	}
	layer.TOCCompressed = nil // kept on disk now; the tree is all that is needed
	return sink.finish(layer, blob)
}

// collectEvery is how many TOC entries a load decodes between garbage
// collections it asks for: a layer of up to this many entries gets none.
const collectEvery = 50_000

// treeSink is the toc.Sink of a layer load: it builds the layer's tree and
// notes its prefetch landmark as the entries are decoded.
type treeSink struct {
	tree     lazyfs.TreeBuilder
	entries  int
	landmark landmark
}

// Expect makes room in the tree (toc.ExpectingSink).
func (s *treeSink) Expect(entries int) { s.tree.Expect(entries) }

func (s *treeSink) Entry(e *estargz.TOCEntry) error {
	s.entries++
	if s.entries%collectEvery == 0 {
		// Most of what decoding allocates is garbage (the decoder's
		// strings, the old arrays of the slices growing with the tree), and
		// the runtime lets the heap grow to twice what was live at its last
		// collection: while a big TOC loads, what is live keeps growing,
		// and the peak would be about twice what the load keeps. A worker's
		// memory is sized for its peak; a collection every collectEvery
		// entries costs a few tens of milliseconds each.
		runtime.GC()
	}
	s.landmark.see(e)
	return s.tree.Add(e)
}

// finish builds the tree of a layer whose every entry was added and
// checked.
func (s *treeSink) finish(layer *toc.Layer, src chunks.Source) (*loadedLayer, error) {
	tree, err := s.tree.Tree(layer.TOCOffset)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", layer.BlobDigest, err)
	}
	return &loadedLayer{layer: layer, tree: tree, src: src, entries: s.entries, landmark: s.landmark}, nil
}

// Detach stops serving a mount and forgets it. The snapshotter unmounts
// before it detaches, so the read loop is ending already.
func (w *Worker) Detach(ctx context.Context, mountID string) error {
	w.mu.Lock()
	m, ok := w.mounts[mountID]
	delete(w.mounts, mountID)
	idle := len(w.mounts) == 0
	w.mu.Unlock()
	if !ok {
		return fmt.Errorf("mount %s: %w", mountID, errdefs.ErrNotFound)
	}
	m.stopServing(5 * time.Second)
	m.close()
	log.G(ctx).WithField("mount_id", mountID).Info("mount detached")
	if idle && w.opts.ExitWhenIdle {
		w.idleFrom(ctx)
	}
	return nil
}

// Shutdown asks the worker to exit.
func (w *Worker) Shutdown(ctx context.Context) error {
	log.G(ctx).Info("shutdown requested")
	w.exit()
	return nil
}

func (w *Worker) exit() { w.once.Do(func() { close(w.done) }) }

// Attach starts serving fd for a loaded layer and returns once the
// connection is served: a fresh one's FUSE INIT answered, or a taken-over
// one's saved INIT replayed (see daemonapi.ControlHandler).
func (w *Worker) Attach(ctx context.Context, req daemonapi.AttachRequest, fd int) (failover.InitState, error) {
	w.mu.Lock()
	m, ok := w.mounts[req.MountID]
	w.mu.Unlock()
	if !ok {
		return failover.InitState{}, fmt.Errorf("mount %s not loaded: %w", req.MountID, errdefs.ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(ctx, w.opts.AttachWait)
	defer cancel()
	st, err := m.serve(ctx, fd, req)
	if err == nil && req.Resume != nil {
		log.G(ctx).WithField("mount_id", req.MountID).WithField("resend_deferred", req.DeferResend).Info("connection taken over")
	}
	if err == nil {
		// After a takeover too: what the dead worker prefetched is on
		// disk and costs the registry nothing.
		m.startPrefetch()
	}
	return st, err
}

// Collect hands the controller a copy of every served connection with its
// INIT state (daemonapi.ConnectionCollector).
func (w *Worker) Collect(ctx context.Context) ([]daemonapi.HeldConnection, error) {
	w.mu.Lock()
	mounts := make([]*mount, 0, len(w.mounts))
	for _, m := range w.mounts {
		mounts = append(mounts, m)
	}
	w.mu.Unlock()
	var conns []daemonapi.HeldConnection
	for _, m := range mounts {
		hc, ok, err := m.held()
		if err != nil {
			for _, c := range conns {
				unix.Close(c.FD)
			}
			return nil, err
		}
		if ok {
			conns = append(conns, hc)
		}
	}
	return conns, nil
}

// Resend sends FUSE_NOTIFY_RESEND on a mount taken over with DeferResend
// (daemonapi.Resender).
func (w *Worker) Resend(ctx context.Context, mountID string) error {
	w.mu.Lock()
	m, ok := w.mounts[mountID]
	w.mu.Unlock()
	if !ok {
		return fmt.Errorf("mount %s: %w", mountID, errdefs.ErrNotFound)
	}
	if err := m.resend(); err != nil {
		return err
	}
	log.G(ctx).WithField("mount_id", mountID).Info("kernel asked to resend what the previous worker held")
	return nil
}

// lazyBlob resolves the registry only on the first read, so that loading a
// kept TOC never waits for a registry.
type lazyBlob struct {
	resolver *remote.Resolver
	ref      string
	dgst     digest.Digest
	// size is the blob's size as the kept TOC recorded it: the first read
	// then needs no size lookup. 0 means unknown.
	size int64

	mu   sync.Mutex
	blob *remote.Blob
}

func (b *lazyBlob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return b.ReadAtVerified(ctx, p, off, nil)
}

// ReadAtVerified makes lazyBlob a chunks.VerifyingSource: an answer whose
// chunks fail their digests is retried by package remote.
func (b *lazyBlob) ReadAtVerified(ctx context.Context, p []byte, off int64, verify func([]byte) error) (int, error) {
	b.mu.Lock()
	blob := b.blob
	b.mu.Unlock()
	if blob == nil {
		var err error
		if b.size > 0 {
			blob, err = b.resolver.BlobOfSize(b.ref, b.dgst, b.size)
		} else {
			blob, err = b.resolver.Blob(ctx, b.ref, b.dgst)
		}
		if err != nil {
			return 0, err
		}
		b.mu.Lock()
		b.blob = blob
		b.mu.Unlock()
	}
	return blob.ReadAtVerified(ctx, p, off, verify)
}
