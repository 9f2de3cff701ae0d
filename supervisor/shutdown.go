package supervisor

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/failover"
)

// ShutdownMode says what Shutdown does with the mounts containers use.
type ShutdownMode int

const (
	// KeepBusy unmounts the layers no container uses and keeps the
	// workers of the others serving, for the next snapshotter to re-adopt:
	// a restart or an upgrade never breaks a running container.
	KeepBusy ShutdownMode = iota
	// UnmountAll drains the node: every layer is unmounted (lazily when
	// busy) and every worker stopped. Containers still reading a lazy
	// layer get errors.
	UnmountAll
)

// KeptWorker is a worker that Shutdown left serving.
type KeptWorker struct {
	ID     string
	PID    int
	Mounts int // mounts it still serves
}

// stopParallelism bounds how many workers Shutdown releases at once: each
// may take a few seconds to exit, and the whole stop must fit systemd's
// patience.
const stopParallelism = 8

// Shutdown stops the supervisor for good. Callers must have stopped the
// gRPC server first, so that nothing mounts meanwhile. Each layer that no
// container uses is unmounted (a plain unmount: EBUSY means in use) and
// detached from its worker; a worker left with nothing to serve is stopped.
// With KeepBusy the workers of busy layers stay up, recorded in workers.db
// with the mounts they still serve, and are returned; the next snapshotter
// re-adopts them, and its Restore mounts the unmounted layers again.
func (s *Supervisor) Shutdown(ctx context.Context, mode ShutdownMode) ([]KeptWorker, error) {
	workers := s.beginClose()

	users, err := readMountUsers()
	if err != nil && mode == KeepBusy {
		// Without the mount table no layer is known to be unused: keeping
		// all is safe, and the next start serves them as they are.
		log.G(ctx).WithError(err).Warn("cannot read the mount table; keeping every worker")
	}

	var (
		mu   sync.Mutex
		kept []KeptWorker
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, stopParallelism)
	)
	for _, w := range workers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			k, err := s.shutdownWorker(s.logger(ctx, w.id), w, users, mode)
			mu.Lock()
			defer mu.Unlock()
			if k != nil {
				kept = append(kept, *k)
			}
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	s.stop()
	s.wg.Wait()
	// errors.Join drops a nil.
	errs = append(errs, s.reg.close())
	return kept, errors.Join(errs...)
}

// shutdownWorker releases a worker's unused mounts and then stops the
// worker, or keeps it (returned) when it still serves a busy one.
func (s *Supervisor) shutdownWorker(ctx context.Context, w *worker, users *mountUsers, mode ShutdownMode) (*KeptWorker, error) {
	unlock := s.idLocks.lock(w.id)
	var errs []error
	busy := 0
	for _, m := range w.mountList() {
		released, err := s.release(ctx, w, m, users, mode)
		if err != nil {
			errs = append(errs, err)
		}
		if !released {
			busy++
		}
	}
	unlock()
	if busy > 0 && mode == KeepBusy && !w.isExited() {
		w.closeClients()
		log.G(ctx).WithField("pid", w.pid).WithField("mounts", busy).Info("keeping worker: containers use its layers; the next snapshotter re-adopts it")
		return &KeptWorker{ID: w.id, PID: w.pid, Mounts: busy}, errors.Join(errs...)
	}
	// Nothing left to serve (or a drain): the worker goes. Mounts it could
	// not release are unmounted lazily on the way.
	if err := s.stopWorker(ctx, w); err != nil {
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// release unmounts one layer unless a container uses it (KeepBusy), and
// detaches it from its worker. It reports whether the mount is gone; a
// mount that failed to unmount stays served, never stale.
func (s *Supervisor) release(ctx context.Context, w *worker, m *mountState, users *mountUsers, mode ShutdownMode) (bool, error) {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("mount_id", m.id).WithField("mountpoint", m.mountpoint))
	if mode == KeepBusy && (users == nil || users.uses(m.mountpoint)) {
		log.G(ctx).Debug("layer in use by a container; keeping it")
		return false, nil
	}
	// The record goes first: a snapshotter killed from here on (a second
	// signal, systemd's SIGKILL) must not leave workers.db naming a mount
	// that is gone, which the next start would take as served. A mount
	// still there but not recorded is found stale and mounted again.
	s.setMount(ctx, w, m, false)
	err := failover.Unmount(m.mountpoint, false)
	if errors.Is(err, unix.EBUSY) {
		if mode == KeepBusy {
			log.G(ctx).Debug("layer busy; keeping it")
			s.setMount(ctx, w, m, true)
			return false, nil
		}
		log.G(ctx).Warn("draining: detaching a layer in use; its readers get errors")
		err = failover.Unmount(m.mountpoint, true)
	}
	if err != nil {
		s.setMount(ctx, w, m, true)
		return false, fmt.Errorf("mount %s: %w", m.id, err)
	}
	s.dropFD(ctx, m)
	if err := w.api.Detach(ctx, m.id); err != nil && !w.isExited() && !errdefs.IsNotFound(err) {
		log.G(ctx).WithError(err).Warn("failed to detach an unmounted layer from its worker")
	}
	log.G(ctx).Debug("layer unmounted")
	return true, nil
}

// setMount adds m to w's mounts or removes it, and records w.
func (s *Supervisor) setMount(ctx context.Context, w *worker, m *mountState, served bool) {
	w.mu.Lock()
	if served {
		w.mounts[m.id] = m
	} else {
		delete(w.mounts, m.id)
	}
	w.mu.Unlock()
	if err := s.record(w); err != nil {
		log.G(ctx).WithError(err).Warn("failed to update the worker registry")
	}
}
