package supervisor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/layer"
	"github.com/lazyfs/lazyfs/metrics"
)

// errWorkerGone is returned by mountOnce when the worker died or was
// replaced while the layer was being mounted through it: mounting through
// its successor may work.
var errWorkerGone = fmt.Errorf("worker gone while mounting: %w", errdefs.ErrUnavailable)

// Mount mounts layer l at mountpoint, in the order
// DESIGN.md sets: the worker loads and verifies the TOC first (hostile input
// is parsed there, never here); only then is /dev/fuse opened, mounted and
// its fd attached to the worker, which answers once FUSE INIT is done. A
// worker that dies meanwhile (even while answering INIT) leaves nothing
// behind, and the layer is mounted once more through its successor.
func (s *Supervisor) Mount(ctx context.Context, id, mountpoint string, l layer.Layer) error {
	// The snapshotter validated it; a layer read back from workers.db
	// comes this way too.
	if err := l.Validate(); err != nil {
		return fmt.Errorf("mount %s: %w", id, err)
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("mount_id", id).WithField("mountpoint", mountpoint))
	// A second Mount of a served id would stack a mount on it, and the
	// worker's refusal of the attach would then detach the served one.
	if w, _ := s.findMount(id); w != nil {
		return fmt.Errorf("mount %s is served by worker %s already: %w", id, w.id, errdefs.ErrAlreadyExists)
	}
	err := s.mountOnce(ctx, id, mountpoint, l)
	if errors.Is(err, errWorkerGone) {
		log.G(ctx).WithError(err).Warn("worker died while mounting a layer; mounting it through its successor")
		err = s.mountOnce(ctx, id, mountpoint, l)
	}
	return err
}

func (s *Supervisor) mountOnce(ctx context.Context, id, mountpoint string, l layer.Layer) (err error) {
	w, err := s.workerFor(ctx, l)
	if err != nil {
		return err
	}
	ctx = s.logger(ctx, w.id)

	if _, err := w.api.LoadLayer(ctx, loadRequest(id, mountpoint, l)); err != nil {
		if w.isExited() {
			return fmt.Errorf("%w: %w", errWorkerGone, err)
		}
		return err
	}
	unlock := s.idLocks.lock(w.id)
	defer unlock()
	defer func() {
		if err != nil && !w.isExited() {
			// Not cancelled with ctx (a restore cancelled by Shutdown
			// still detaches), but bounded: Shutdown waits for it.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), detachTimeout)
			defer cancel()
			if derr := w.api.Detach(dctx, id); derr != nil {
				log.G(ctx).WithError(derr).Warn("failed to detach a failed mount from its worker")
			}
		}
	}()
	if s.current(w.id) != w {
		// It died (and was taken over) after it loaded the layer.
		return errWorkerGone
	}

	conn, err := failover.Open(mountpoint, "lazyfs", "lazyfs")
	if err != nil {
		return err
	}
	m := &mountState{id: id, mountpoint: mountpoint, layer: l, conn: conn}
	defer func() {
		if err != nil {
			unmountQuietly(ctx, mountpoint)
			conn.Close()
		}
	}()

	ctl := w.controlClient()
	if ctl == nil {
		return fmt.Errorf("worker %s: no control connection: %w", w.id, errdefs.ErrUnavailable)
	}
	init, err := ctl.Attach(ctx, daemonapi.AttachRequest{MountID: id}, conn.FD())
	if err != nil {
		if s.waitExited(w, time.Second) {
			// Killed mid-INIT: the kernel's INIT went with it. This
			// connection is dropped; the retry mounts a fresh one.
			return fmt.Errorf("%w: %w", errWorkerGone, err)
		}
		return err
	}

	conn.SetInit(init)
	w.mu.Lock()
	w.mounts[id] = m
	w.mu.Unlock()
	if !init.SupportsResend() {
		log.G(ctx).Warn("kernel lacks FUSE_NOTIFY_RESEND (Linux < 6.9): if this worker dies, reads in flight may hang until the kernel's request timeout")
	}
	s.storeFD(ctx, m)
	if err := s.record(w); err != nil {
		// The mount works; only a restart would not find it in the registry
		// and would mount it again through a new worker.
		log.G(ctx).WithError(err).Warn("failed to record a mount in the worker registry")
	}
	return nil
}

// detachTimeout bounds the detach of a mount that failed half-way.
const detachTimeout = 5 * time.Second

// loadRequest is what a worker is asked to load for a mount.
func loadRequest(id, mountpoint string, l layer.Layer) daemonapi.LoadLayerRequest {
	return daemonapi.LoadLayerRequest{
		MountID:     id,
		ImageRef:    l.ImageRef,
		LayerDigest: l.LayerDigest.String(),
		TOCDigest:   l.TOCDigest.String(),
		Mountpoint:  mountpoint,
		NextLayers:  digestStrings(l.NextLayers),
	}
}

func digestStrings(ds []digest.Digest) []string {
	var s []string
	for _, d := range ds {
		s = append(s, d.String())
	}
	return s
}

// waitExited waits at most d for w's process to be gone: a control
// connection that broke is usually the first sign of a death that the
// process watcher reports a moment later.
func (s *Supervisor) waitExited(w *worker, d time.Duration) bool {
	select {
	case <-w.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// Unmount unmounts a layer and tells its worker to stop serving it.
func (s *Supervisor) Unmount(ctx context.Context, id, mountpoint string) error {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("mount_id", id).WithField("mountpoint", mountpoint))
	s.pending.forget(id)
	w, m, unlock := s.lockMount(id)
	defer unlock()
	// Unmount first: the worker's read loop ends when the kernel reports
	// the connection gone.
	err := failover.Unmount(mountpoint, false)
	if err != nil {
		log.G(ctx).WithError(err).Warn("mount busy; detaching it lazily")
		err = failover.Unmount(mountpoint, true)
	}
	if w == nil {
		return err
	}
	w.mu.Lock()
	delete(w.mounts, id)
	last := len(w.mounts) == 0
	w.mu.Unlock()
	s.dropFD(ctx, m)
	if last {
		s.scrapeWorker(ctx, w) // a per-image worker exits on this detach
	}
	if derr := w.api.Detach(ctx, id); derr != nil && !w.isExited() {
		// A worker that exits when idle may be gone already.
		err = errors.Join(err, derr)
	}
	if perr := s.record(w); perr != nil {
		log.G(ctx).WithError(perr).Warn("failed to update the worker registry")
	}
	return err
}

// lockMount finds the worker serving mount id and takes that worker id's
// lock, so that no takeover moves the mount meanwhile. w is nil (and
// nothing locked) when no worker serves it.
func (s *Supervisor) lockMount(id string) (w *worker, m *mountState, unlock func()) {
	for {
		w, _ := s.findMount(id)
		if w == nil {
			return nil, nil, func() {}
		}
		unlock := s.idLocks.lock(w.id)
		// A takeover may have moved the mount while we waited.
		if w2, m := s.findMount(id); w2 == w {
			return w, m, unlock
		}
		unlock()
	}
}

// Restore serves a remote snapshot of an earlier run again. A mount whose
// worker survived (or is being taken over) is left as it is; a stale one
// (its worker is gone with its connection) is detached and mounted again
// through a worker that loads the TOC kept on disk, without the registry.
// Restore returns at once and does that in the background; Wait tells when
// it is done.
func (s *Supervisor) Restore(ctx context.Context, id, mountpoint string, l layer.Layer) error {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("mount_id", id).WithField("mountpoint", mountpoint))
	if w, _ := s.findMount(id); w != nil {
		log.G(ctx).WithField("worker_id", w.id).Debug("mount still served by its worker")
		return nil
	}
	s.pending.begin(id)
	// The restores' ctx, not the caller's: Shutdown and Close cancel this
	// work and wait for it before they list the workers.
	rctx := log.WithLogger(s.rctx, log.G(ctx))
	started := s.goRestore(func() {
		err := s.remount(rctx, id, mountpoint, l)
		if err != nil {
			log.G(ctx).WithError(err).Error("failed to mount a layer of the last run again")
		}
		s.pending.end(id, err)
	})
	if !started {
		err := fmt.Errorf("mount %s: supervisor is shutting down: %w", id, errdefs.ErrUnavailable)
		s.pending.end(id, err)
		return err
	}
	return nil
}

// goRestore runs fn, which mounts layers again, in the background under
// rwg, unless the supervisor is closing: beginClose waits for rwg once, so
// nothing may join it afterwards.
func (s *Supervisor) goRestore(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.rwg.Add(1)
	go func() {
		defer s.rwg.Done()
		fn()
	}()
	return true
}

// remount detaches whatever is left at mountpoint and mounts the layer again.
func (s *Supervisor) remount(ctx context.Context, id, mountpoint string, l layer.Layer) error {
	// The mount table, not the mountpoint: a stat on a FUSE mount whose
	// worker is gone could block.
	stale, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mountpoint))
	if err != nil {
		return err
	}
	if len(stale) > 0 {
		log.G(ctx).Info("detaching a stale mount whose worker is gone")
		if err := failover.Unmount(mountpoint, true); err != nil {
			return err
		}
	}
	return s.Mount(ctx, id, mountpoint, l)
}

func (s *Supervisor) findMount(id string) (*worker, *mountState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.workers {
		w.mu.Lock()
		m, ok := w.mounts[id]
		w.mu.Unlock()
		if ok {
			return w, m
		}
	}
	return nil, nil
}

// workerFor returns the worker that serves the layer's image, spawning it
// when there is none. A worker being taken over is waited for: its id's
// lock is held meanwhile.
func (s *Supervisor) workerFor(ctx context.Context, l layer.Layer) (*worker, error) {
	id := s.workerID(l)
	unlock := s.idLocks.lock(id)
	defer unlock()
	if s.isClosing() {
		return nil, fmt.Errorf("supervisor is shutting down: %w", errdefs.ErrUnavailable)
	}
	if w := s.current(id); w != nil && !w.isExited() {
		w.mu.Lock()
		stopping := w.stopping
		w.mu.Unlock()
		if !stopping {
			return w, nil
		}
		// Exiting when idle raced with this mount: start a new one.
	}
	w, err := s.spawn(ctx, id, false)
	if err != nil {
		return nil, err
	}
	metrics.WorkerStarts.WithLabelValues("new").Inc()
	s.mu.Lock()
	s.workers[id] = w
	s.mu.Unlock()
	if err := s.record(w); err != nil {
		log.G(ctx).WithError(err).Warn("failed to record a worker in the registry")
	}
	return w, nil
}

// workerID names the worker of a layer: one per image (by manifest digest,
// or by image reference when the client sent no manifest digest), or the
// shared one.
func (s *Supervisor) workerID(l layer.Layer) string {
	if s.opts.Mode == Shared {
		return "shared"
	}
	if l.ManifestDigest != "" {
		return "img-" + l.ManifestDigest.Encoded()[:16]
	}
	return "ref-" + digestOf(l.ImageRef)[:16]
}

// storeFD puts a copy of the mount's fd in the systemd fd store.
func (s *Supervisor) storeFD(ctx context.Context, m *mountState) {
	fd := m.conn.FD()
	if fd < 0 {
		return
	}
	if err := s.opts.FDStore.Add(failover.MountFDName(m.id), fd); err != nil {
		log.G(ctx).WithError(err).Warn("failed to keep a connection in the systemd fd store")
	}
}

// dropFD closes the supervisor's copy of the mount's fd and removes it from
// the fd store: the mount is gone.
func (s *Supervisor) dropFD(ctx context.Context, m *mountState) {
	if m == nil {
		return
	}
	m.conn.Close()
	if err := s.opts.FDStore.Remove(failover.MountFDName(m.id)); err != nil {
		log.G(ctx).WithError(err).Warn("failed to remove a connection from the systemd fd store")
	}
}

func unmountQuietly(ctx context.Context, mountpoint string) {
	if err := failover.Unmount(mountpoint, true); err != nil {
		log.G(ctx).WithError(err).Warn("failed to unmount")
	}
}
