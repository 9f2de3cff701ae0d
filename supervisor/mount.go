package supervisor

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/moby/sys/mountinfo"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/labels"
)

// Mount mounts the layer the labels describe at mountpoint, in the order
// DESIGN.md sets: the worker loads and verifies the TOC first (hostile input
// is parsed there, never here); only then is /dev/fuse opened, mounted and
// its fd attached to the worker, which answers once FUSE INIT is done.
func (s *Supervisor) Mount(ctx context.Context, id, mountpoint string, lbls map[string]string) (err error) {
	layer, err := labels.ParseLayer(lbls)
	if err != nil {
		return err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("mount_id", id).WithField("mountpoint", mountpoint))
	// A second Mount of a served id would stack a mount on it, and the
	// worker's refusal of the attach would then detach the served one.
	if w, _ := s.findMount(id); w != nil {
		return fmt.Errorf("mount %s is served by worker %s already: %w", id, w.id, errdefs.ErrAlreadyExists)
	}
	w, err := s.workerFor(ctx, layer)
	if err != nil {
		return err
	}
	ctx = s.logger(ctx, w.id)

	if _, err := w.api.LoadLayer(ctx, daemonapi.LoadLayerRequest{
		MountID:     id,
		ImageRef:    layer.ImageRef,
		LayerDigest: layer.LayerDigest.String(),
		TOCDigest:   layer.TOCDigest.String(),
		Mountpoint:  mountpoint,
	}); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			if derr := w.api.Detach(context.WithoutCancel(ctx), id); derr != nil {
				log.G(ctx).WithError(derr).Warn("failed to detach a failed mount from its worker")
			}
		}
	}()

	fd, err := failover.OpenFuse()
	if err != nil {
		return err
	}
	m := &mountState{id: id, mountpoint: mountpoint, labels: lbls, fd: fd}
	if err := failover.Mount(fd, mountpoint, "lazyfs", "lazyfs"); err != nil {
		m.closeFD()
		return err
	}
	defer func() {
		if err != nil {
			unmountQuietly(ctx, mountpoint)
			m.closeFD()
		}
	}()

	w.mu.Lock()
	ctl := w.control
	w.mu.Unlock()
	if ctl == nil {
		return fmt.Errorf("worker %s: no control connection", w.id)
	}
	m.init, err = ctl.Attach(ctx, id, fd)
	if err != nil {
		return err
	}

	w.mu.Lock()
	w.mounts[id] = m
	w.mu.Unlock()
	if err := s.record(w); err != nil {
		// The mount works; only a restart would not find it in the registry
		// and would mount it again through a new worker.
		log.G(ctx).WithError(err).Warn("failed to record a mount in the worker registry")
	}
	return nil
}

// Unmount unmounts a layer and tells its worker to stop serving it.
func (s *Supervisor) Unmount(ctx context.Context, id, mountpoint string) error {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("mount_id", id).WithField("mountpoint", mountpoint))
	s.pending.forget(id)
	w, m := s.findMount(id)
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
	m.closeFD()
	if last {
		s.scrapeWorker(ctx, w) // a per-image worker exits on this detach
	}
	if derr := w.api.Detach(ctx, id); derr != nil {
		select {
		case <-w.exited: // a worker that exits when idle may be gone already
		default:
			err = errors.Join(err, derr)
		}
	}
	if perr := s.record(w); perr != nil {
		log.G(ctx).WithError(perr).Warn("failed to update the worker registry")
	}
	return err
}

// Restore serves a remote snapshot of an earlier run again. A mount whose
// worker survived is left as it is; a stale one (its worker is gone) is
// detached and mounted again through a worker that loads the TOC kept on
// disk, without the registry. Restore returns at once and does that in the
// background; Wait tells when it is done.
func (s *Supervisor) Restore(ctx context.Context, id, mountpoint string, lbls map[string]string) error {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("mount_id", id).WithField("mountpoint", mountpoint))
	if w, _ := s.findMount(id); w != nil {
		log.G(ctx).WithField("worker_id", w.id).Debug("mount still served by its worker")
		return nil
	}
	s.pending.begin(id)
	// The supervisor's ctx, not the caller's: Close cancels this work.
	rctx := log.WithLogger(s.ctx, log.G(ctx))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := s.remount(rctx, id, mountpoint, lbls)
		if err != nil {
			log.G(ctx).WithError(err).Error("failed to mount a layer of the last run again")
		}
		s.pending.end(id, err)
	}()
	return nil
}

// remount detaches whatever is left at mountpoint and mounts the layer again.
func (s *Supervisor) remount(ctx context.Context, id, mountpoint string, lbls map[string]string) error {
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
	return s.Mount(ctx, id, mountpoint, lbls)
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
// when there is none.
func (s *Supervisor) workerFor(ctx context.Context, layer labels.Layer) (*worker, error) {
	id := s.workerID(layer)
	s.spawnMu.Lock()
	defer s.spawnMu.Unlock()
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil, errors.New("supervisor is shutting down")
	}
	w, ok := s.workers[id]
	s.mu.Unlock()
	if ok {
		select {
		case <-w.exited:
			// Exiting when idle raced with this mount: start a new one.
		default:
			w.mu.Lock()
			stopping := w.stopping
			w.mu.Unlock()
			if !stopping {
				return w, nil
			}
		}
	}
	w, err := s.spawn(ctx, id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.workers[id] = w
	s.mu.Unlock()
	return w, nil
}

// workerID names the worker of a layer: one per image (by manifest digest,
// or by image reference when the client sent no manifest digest), or the
// shared one.
func (s *Supervisor) workerID(layer labels.Layer) string {
	if s.opts.Mode == Shared {
		return "shared"
	}
	if layer.ManifestDigest != "" {
		return "img-" + layer.ManifestDigest.Encoded()[:16]
	}
	return "ref-" + digestOf(layer.ImageRef)[:16]
}

func unmountQuietly(ctx context.Context, mountpoint string) {
	if err := failover.Unmount(mountpoint, true); err != nil {
		log.G(ctx).WithError(err).Warn("failed to unmount")
	}
}
