package supervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/metrics"
)

// handleExit runs when a worker process is gone. An expected exit (shutdown,
// idle, replaced) only forgets the worker. A crash hands the worker's
// connections to a successor (takeOver), so that its readers only wait.
func (s *Supervisor) handleExit(ctx context.Context, w *worker) {
	s.history.exited(w) // mgmt API: last exit (status.go)
	w.mu.Lock()
	expected := w.stopping
	if w.control != nil {
		w.control.Close()
		w.control = nil
	}
	w.mu.Unlock()
	mounts := w.mountList()

	unlock := s.idLocks.lock(w.id)
	defer unlock()
	s.mu.Lock()
	ours := s.workers[w.id] == w
	closing := s.closing
	if !closing {
		s.exits.Add(1)
		defer s.exits.Done()
	}
	s.mu.Unlock()
	if !ours {
		// Replaced already (a planned replacement, or a takeover that
		// gave up on it): its successor owns the id, the record and the
		// sockets.
		log.G(ctx).WithField("pid", w.pid).Info("replaced worker exited")
		return
	}
	if expected || len(mounts) == 0 {
		metrics.WorkerExits.WithLabelValues("expected").Inc()
		s.forget(ctx, w)
		log.G(ctx).WithField("pid", w.pid).Info("worker exited")
		return
	}
	cause, detail := w.exitCause()
	metrics.WorkerExits.WithLabelValues(cause).Inc()
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("pid", w.pid).WithField("cause", detail).WithField("mounts", len(mounts)))
	if closing {
		log.G(ctx).Error("worker died while the snapshotter stops; its mounts are detached")
		s.forget(ctx, w)
		s.detachDead(ctx, mounts)
		return
	}
	if s.opts.RecoverPolicy == Remount {
		log.G(ctx).Error("worker died; its readers get errors, mounting its layers again through a new worker (recover_policy remount)")
		s.forget(ctx, w)
		s.detachDead(ctx, mounts)
		s.remountDead(ctx, mounts)
		return
	}
	s.takeOver(ctx, w, mounts, cause)
}

// forget removes a worker that is gone from the table, the registry and the
// run dir. The caller holds its id's lock and checked it is the current one.
func (s *Supervisor) forget(ctx context.Context, w *worker) {
	s.mu.Lock()
	delete(s.workers, w.id)
	s.mu.Unlock()
	// Outside s.mu (an fsync); the caller's id lock keeps a successor's
	// record from being written meanwhile.
	if err := s.reg.delete(w.id); err != nil {
		log.G(ctx).WithError(err).Warn("failed to remove worker from the registry")
	}
	os.RemoveAll(filepath.Dir(w.apiSock))
}

// detachDead closes the connections of mounts nobody will serve again (their
// readers get errors, never hang) and detaches the mounts.
func (s *Supervisor) detachDead(ctx context.Context, mounts []*mountState) {
	for _, m := range mounts {
		s.dropFD(ctx, m)
		if err := failover.Unmount(m.mountpoint, true); err != nil {
			log.G(ctx).WithError(err).WithField("mountpoint", m.mountpoint).Warn("failed to detach a dead worker's mount")
		}
	}
}

// remountDead mounts detached layers again in the background, for new
// containers; until then Prepare waits for them.
func (s *Supervisor) remountDead(ctx context.Context, mounts []*mountState) {
	for _, m := range mounts {
		s.pending.begin(m.id)
	}
	started := s.goRestore(func() {
		for _, m := range mounts {
			err := s.Mount(s.rctx, m.id, m.mountpoint, m.layer)
			if err != nil {
				log.G(ctx).WithError(err).WithField("mountpoint", m.mountpoint).Error("failed to mount a layer again after its worker died")
			}
			s.pending.end(m.id, err)
		}
	})
	if !started {
		for _, m := range mounts {
			s.pending.end(m.id, fmt.Errorf("mount %s: supervisor is shutting down: %w", m.id, errdefs.ErrUnavailable))
		}
	}
}

// exitCause classifies how a worker ended, for the metrics and the history
// (cause) and the log (detail). A worker the health checks killed is
// "hung", whatever signal ended it.
func (w *worker) exitCause() (cause, detail string) {
	cause, detail = exitCause(w.waitErr)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hung {
		cause, detail = "hung", "killed after missing its health checks ("+detail+")"
	}
	return cause, detail
}

// exitCause classifies a process's end from cmd.Wait's error.
func exitCause(err error) (cause, detail string) {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
			switch {
			case ws.Signaled() && ws.Signal() == syscall.SIGKILL:
				// The kernel's OOM killer looks the same.
				return "killed", "killed by SIGKILL (or the OOM killer)"
			case ws.Signaled():
				return "signal", "killed by " + ws.Signal().String()
			default:
				return "exit", "exited with status " + strconv.Itoa(ws.ExitStatus())
			}
		}
	}
	if err == nil {
		return "unknown", "exited (status unknown: not our child, or exited 0)"
	}
	return "unknown", err.Error()
}

// stopWorker unmounts a worker's layers and stops it: politely first, then
// with SIGKILL.
func (s *Supervisor) stopWorker(ctx context.Context, w *worker) error {
	ctx = s.logger(ctx, w.id)
	w.mu.Lock()
	w.stopping = true
	w.mu.Unlock()

	var errs []error
	mounts := w.mountList()
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
			killWorker(ctx, w.pid, syscall.SIGTERM)
		}
	}
	select {
	case <-w.exited:
	case <-sctx.Done():
		log.G(ctx).Warn("worker did not exit; killing it")
		killWorker(ctx, w.pid, syscall.SIGKILL)
		select {
		case <-w.exited:
		case <-time.After(5 * time.Second):
			errs = append(errs, errors.New("worker "+w.id+" survived SIGKILL"))
		}
	}
	return errors.Join(errs...)
}

// adoptAll reconnects to the workers of an earlier run that are still alive
// and collects their connections. A dead one whose connections the systemd
// fd store kept is taken over; the other dead ones are forgotten, and
// Restore finds their mounts stale.
func (s *Supervisor) adoptAll(ctx context.Context) error {
	recs, err := s.reg.list()
	if err != nil {
		return err
	}
	stored := storedMountFDs(ctx, s.opts.StoredFDs)
	for _, rec := range recs {
		ctx := s.logger(ctx, rec.ID)
		if !sameProcess(rec.PID, rec.StartTime) {
			if s.takeOverStored(ctx, rec, stored) {
				continue
			}
			log.G(ctx).WithField("pid", rec.PID).Warn("worker of the last run is gone; its layers will be mounted again")
			s.reg.delete(rec.ID)
			os.RemoveAll(filepath.Dir(rec.APISocket))
			continue
		}
		if err := s.adopt(ctx, rec, stored); err != nil {
			// Alive but unusable: it keeps serving what it serves, and
			// Restore mounts its layers again elsewhere.
			log.G(ctx).WithError(err).WithField("pid", rec.PID).Error("failed to re-adopt a worker of the last run")
		}
	}
	// What the fd store kept of mounts no worker knows is stale.
	for id, fd := range stored {
		unix.Close(fd)
		s.opts.FDStore.Remove(failover.MountFDName(id))
	}
	return nil
}

// storedMountFDs sorts the fds the fd store handed back by mount id, one
// each (extra copies are closed).
func storedMountFDs(ctx context.Context, fds map[string][]int) map[string]int {
	out := map[string]int{}
	for name, list := range fds {
		id, ok := failover.MountIDFromFDName(name)
		for i, fd := range list {
			if !ok || i > 0 {
				log.G(ctx).WithField("fd_name", name).Warn("closing an unexpected fd from the fd store")
				unix.Close(fd)
				continue
			}
			out[id] = fd
		}
	}
	return out
}

func (s *Supervisor) adopt(ctx context.Context, rec record, stored map[string]int) error {
	w := &worker{
		id:        rec.ID,
		pid:       rec.PID,
		startTime: rec.StartTime,
		apiSock:   rec.APISocket,
		ctlSock:   rec.ControlSocket,
		api:       daemonapi.NewClient(rec.APISocket, rec.ID),
		exited:    make(chan struct{}),
		mounts:    map[string]*mountState{},
		servedAt:  time.Now().UnixNano(),
		startedAt: time.Now(),
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
		ms := &mountState{id: id, mountpoint: m.Mountpoint, layer: s.recordedLayer(ctx, id, m), conn: failover.NewConn(-1, m.Init)}
		if fd, ok := stored[id]; ok {
			ms.conn.Hold(fd, m.Init)
			delete(stored, id)
		}
		w.mounts[id] = ms
	}
	// Copies of its connections, so that a later death of this worker is
	// a takeover too.
	conns, err := ctl.Collect(actx)
	if err != nil {
		log.G(ctx).WithError(err).Warn("failed to collect the connections of a re-adopted worker; if it dies, its readers get errors")
	}
	for _, hc := range conns {
		m, ok := w.mounts[hc.MountID]
		if !ok {
			unix.Close(hc.FD) // unknown to the registry
			continue
		}
		// The worker's INIT state is the authority; an fd the fd store
		// handed back already is the same connection.
		if m.conn.Held() {
			unix.Close(hc.FD)
			m.conn.SetInit(hc.Init)
			continue
		}
		m.conn.Hold(hc.FD, hc.Init)
		s.storeFD(ctx, m)
	}
	pidfd, err := unix.PidfdOpen(rec.PID, 0)
	if err != nil {
		ctl.Close()
		for _, m := range w.mounts {
			m.conn.Close()
		}
		return err
	}
	// Its stderr is the dead snapshotter's pipe: a new one, or its later
	// output (a panic, a SIGQUIT dump) would be lost.
	if err := s.newLogPipe(actx, w, ctl); err != nil {
		log.G(ctx).WithError(err).Warn("failed to hand a re-adopted worker a new log pipe; its later output is lost")
	}
	s.mu.Lock()
	s.workers[w.id] = w
	s.mu.Unlock()
	if err := s.record(w); err != nil {
		log.G(ctx).WithError(err).Warn("failed to update the worker registry")
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		defer unix.Close(pidfd)
		if !waitPidfd(s.ctx, pidfd) {
			return // supervisor closing; the worker lives on
		}
		close(w.exited)
		s.handleExit(s.logger(s.ctx, w.id), w)
	}()
	go func() {
		defer s.wg.Done()
		s.watchHealth(w)
	}()
	log.G(ctx).WithField("pid", rec.PID).WithField("mounts", len(rec.Mounts)).WithField("connections_collected", len(conns)).Info("re-adopted worker of the last run")
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
