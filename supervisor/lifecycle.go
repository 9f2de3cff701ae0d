package supervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
)

// handleExit runs when a worker process is gone. An expected exit (shutdown,
// idle) only forgets the worker. A crash must not leave readers hanging: the
// supervisor drops its fd copies (the kernel then aborts the connections and
// blocked readers get an error), detaches the dead mounts, and mounts the
// layers again through a new worker so that new containers work.
func (s *Supervisor) handleExit(ctx context.Context, w *worker, waitErr error) {
	w.mu.Lock()
	expected := w.stopping
	mounts := make([]*mountState, 0, len(w.mounts))
	for _, m := range w.mounts {
		mounts = append(mounts, m)
	}
	w.mounts = map[string]*mountState{}
	if w.control != nil {
		w.control.Close()
		w.control = nil
	}
	w.mu.Unlock()

	// Under spawnMu: a new worker of the same id may be spawned as soon as
	// this one is seen to have exited, and its record and sockets (same
	// paths) must not be removed with this one's.
	s.spawnMu.Lock()
	s.mu.Lock()
	owner := s.workers[w.id]
	if owner == w {
		delete(s.workers, w.id)
	}
	closing := s.closing
	ours := owner == nil || owner == w
	if ours {
		if err := s.reg.delete(w.id); err != nil {
			log.G(ctx).WithError(err).Warn("failed to remove worker from the registry")
		}
	}
	s.mu.Unlock()
	if ours {
		os.RemoveAll(filepath.Dir(w.apiSock))
	}
	s.spawnMu.Unlock()

	if expected || len(mounts) == 0 {
		log.G(ctx).WithField("pid", w.pid).Info("worker exited")
		return
	}
	log.G(ctx).WithError(waitErr).WithField("pid", w.pid).WithField("mounts", len(mounts)).Error("worker died; its readers get errors, mounting its layers again through a new worker")
	if !closing {
		// Before detaching: a container prepared from now on waits for
		// the new mount instead of getting an empty lower directory.
		for _, m := range mounts {
			s.pending.begin(m.id)
		}
	}
	for _, m := range mounts {
		m.closeFD()
		if err := failover.Unmount(m.mountpoint, true); err != nil {
			log.G(ctx).WithError(err).WithField("mountpoint", m.mountpoint).Warn("failed to detach a dead worker's mount")
		}
	}
	if closing {
		return
	}
	for _, m := range mounts {
		err := s.Mount(s.ctx, m.id, m.mountpoint, m.labels)
		if err != nil {
			log.G(ctx).WithError(err).WithField("mountpoint", m.mountpoint).Error("failed to mount a layer again after its worker died")
		}
		s.pending.end(m.id, err)
	}
}

// stopWorker unmounts a worker's layers and stops it: politely first, then
// with SIGKILL.
func (s *Supervisor) stopWorker(ctx context.Context, w *worker) error {
	ctx = s.logger(ctx, w.id)
	w.mu.Lock()
	w.stopping = true
	mounts := make([]*mountState, 0, len(w.mounts))
	for _, m := range w.mounts {
		mounts = append(mounts, m)
	}
	w.mu.Unlock()

	var errs []error
	for _, m := range mounts {
		if err := s.Unmount(ctx, m.id, m.mountpoint); err != nil {
			errs = append(errs, err)
		}
	}
	if len(mounts) == 0 {
		s.scrapeWorker(ctx, w) // else Unmount of the last mount did
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := w.api.Shutdown(sctx); err != nil {
		select {
		case <-w.exited:
			// Exited when idle after its last unmount; its pid may be
			// reaped and reused, so no signal.
		default:
			log.G(ctx).WithError(err).Debug("shutdown request failed; signalling")
			syscall.Kill(w.pid, syscall.SIGTERM)
		}
	}
	select {
	case <-w.exited:
	case <-sctx.Done():
		log.G(ctx).Warn("worker did not exit; killing it")
		syscall.Kill(w.pid, syscall.SIGKILL)
		select {
		case <-w.exited:
		case <-time.After(5 * time.Second):
			errs = append(errs, errors.New("worker "+w.id+" survived SIGKILL"))
		}
	}
	return errors.Join(errs...)
}

// adoptAll reconnects to the workers of an earlier run that are still alive
// and forgets the dead ones, whose mounts Restore will find stale.
func (s *Supervisor) adoptAll(ctx context.Context) error {
	recs, err := s.reg.list()
	if err != nil {
		return err
	}
	for _, rec := range recs {
		ctx := s.logger(ctx, rec.ID)
		if !sameProcess(rec.PID, rec.StartTime) {
			log.G(ctx).WithField("pid", rec.PID).Warn("worker of the last run is gone; its layers will be mounted again")
			s.reg.delete(rec.ID)
			os.RemoveAll(filepath.Dir(rec.APISocket))
			continue
		}
		if err := s.adopt(ctx, rec); err != nil {
			// Alive but unusable: it keeps serving what it serves, and
			// Restore mounts its layers again elsewhere.
			log.G(ctx).WithError(err).WithField("pid", rec.PID).Error("failed to re-adopt a worker of the last run")
		}
	}
	return nil
}

func (s *Supervisor) adopt(ctx context.Context, rec record) error {
	w := &worker{
		id:        rec.ID,
		pid:       rec.PID,
		startTime: rec.StartTime,
		apiSock:   rec.APISocket,
		ctlSock:   rec.ControlSocket,
		api:       daemonapi.NewClient(rec.APISocket, rec.ID),
		exited:    make(chan struct{}),
		mounts:    map[string]*mountState{},
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := w.api.Info(actx)
	if err != nil {
		return err
	}
	if info.PID != rec.PID {
		return errors.New("api socket answered by another process")
	}
	ctl, err := daemonapi.DialControl(actx, rec.ControlSocket)
	if err != nil {
		return err
	}
	w.control = ctl
	for id, m := range rec.Mounts {
		w.mounts[id] = &mountState{id: id, mountpoint: m.Mountpoint, labels: m.Labels, fd: -1}
	}
	pidfd, err := unix.PidfdOpen(rec.PID, 0)
	if err != nil {
		ctl.Close()
		return err
	}
	s.mu.Lock()
	s.workers[w.id] = w
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer unix.Close(pidfd)
		if !waitPidfd(s.ctx, pidfd) {
			return // supervisor closing; the worker lives on
		}
		close(w.exited)
		s.handleExit(s.logger(s.ctx, w.id), w, errors.New("adopted worker exited"))
	}()
	log.G(ctx).WithField("pid", rec.PID).WithField("mounts", len(rec.Mounts)).Info("re-adopted worker of the last run")
	return nil
}

// waitPidfd waits until the process behind pidfd exits (true) or ctx ends
// (false). An adopted worker is not our child, so Wait cannot be used.
func waitPidfd(ctx context.Context, pidfd int) bool {
	for {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 200)
		if err == nil && n > 0 {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
	}
}

func digestOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
