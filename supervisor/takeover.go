package supervisor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sync/errgroup"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/metrics"
)

// maxBackoff bounds the wait between two successors of a crash-looping
// worker: readers of its mounts wait meanwhile.
const maxBackoff = 5 * time.Second

// takeOver hands a dead worker's connections to a successor with the same
// id (FAILOVER.md): the successor loads the same layers from the TOCs kept on
// disk, replays each connection's INIT and asks the kernel to resend what
// the dead worker held. The supervisor's fd copies keep the connections
// alive meanwhile, so readers only wait. A successor that dies too is
// replaced with backoff; after a crash loop the mounts are given up.
//
// The caller holds dead.id's lock; dead stays registered (so Restore and
// workerFor see the id as busy) until its successor replaces it.
func (s *Supervisor) takeOver(ctx context.Context, dead *worker, mounts []*mountState, cause string) {
	start := time.Now()
	quick := s.countDeath(dead)
	// Mounts without a held connection (a worker of an earlier run that
	// could not hand them over) cannot be taken over: mounted again.
	var held, lost []*mountState
	for _, m := range mounts {
		if m.conn.CanTakeOver() {
			held = append(held, m)
		} else {
			lost = append(lost, m)
		}
	}
	dead.mu.Lock()
	dead.takingOver = true
	dead.mu.Unlock()
	defer func() {
		dead.mu.Lock()
		dead.takingOver = false
		dead.mu.Unlock()
	}()
	log.G(ctx).WithField("quick_deaths", quick).WithField("held", len(held)).WithField("lost", len(lost)).Error("worker died; handing its connections to a successor")
	for _, m := range mounts {
		s.pending.begin(m.id)
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("failed_worker_pid", dead.pid))
	var succ *worker
	for attempt := 0; ; attempt++ {
		if quick >= s.opts.CrashLoopCount {
			s.giveUp(ctx, dead, mounts, fmt.Errorf("worker %s died %d times in a row within %v of serving", dead.id, quick, s.opts.CrashLoopWindow))
			return
		}
		// The first successor after a death starts at once: readers wait
		// meanwhile. Only a worker that keeps dying quickly is slowed.
		if d := s.backoff(quick - 1 + attempt); d > 0 {
			log.G(ctx).WithField("backoff", d).Warn("waiting before the next successor")
			select {
			case <-time.After(d):
			case <-s.tctx.Done():
			}
		}
		if s.tctx.Err() != nil {
			s.giveUp(ctx, dead, mounts, fmt.Errorf("snapshotter stopping: %w", errdefs.ErrUnavailable))
			return
		}
		var err error
		succ, err = s.startSuccessor(ctx, dead.id, held, false)
		if err == nil {
			break
		}
		log.G(ctx).WithError(err).WithField("attempt", attempt+1).Error("successor failed to take over")
		if attempt+1 >= s.opts.CrashLoopCount {
			s.giveUp(ctx, dead, mounts, fmt.Errorf("no successor could take over after %d attempts: %w", attempt+1, err))
			return
		}
	}
	s.install(ctx, dead, succ, held)
	elapsed := time.Since(start)
	metrics.Failovers.WithLabelValues(dead.id, cause).Inc()
	metrics.FailoverDuration.Observe(elapsed.Seconds())
	for _, m := range held {
		s.pending.end(m.id, nil)
	}
	log.G(ctx).WithField("successor_pid", succ.pid).WithField("duration", elapsed).WithField("mounts", len(held)).Warn("worker failed over: its connections are served by a successor")
	if len(lost) > 0 {
		s.detachDead(ctx, lost)
		s.remountDead(ctx, lost)
	}
}

// startSuccessor spawns a worker for id and hands it the mounts' held
// connections. On error nothing is left running. deferResend is for a
// planned replacement: the predecessor still answers what it read.
func (s *Supervisor) startSuccessor(ctx context.Context, id string, mounts []*mountState, deferResend bool) (*worker, error) {
	start := time.Now()
	// A planned replacement (deferResend) may be an upgrade of lazyfsd:
	// never the standby, which runs the binary as it was.
	succ, err := s.spawn(ctx, id, deferResend)
	if err != nil {
		metrics.TakeoversRefused.WithLabelValues("spawn").Inc()
		return nil, err
	}
	metrics.WorkerStarts.WithLabelValues("successor").Inc()
	spawned := time.Now()
	err = s.hand(ctx, succ, mounts, deferResend)
	log.G(ctx).WithField("spawn", spawned.Sub(start)).WithField("hand", time.Since(spawned)).Debug("successor started and handed the connections")
	if err != nil {
		succ.mu.Lock()
		succ.stopping = true
		succ.mu.Unlock()
		if !succ.isExited() {
			killWorker(ctx, succ.pid, syscall.SIGKILL)
		}
		<-succ.exited
		return nil, err
	}
	return succ, nil
}

// hand gives succ every mount's connection: it loads the layer (from the
// TOC kept on disk), then attaches the fd with the INIT state to resume.
func (s *Supervisor) hand(ctx context.Context, succ *worker, mounts []*mountState, deferResend bool) error {
	ctl := succ.controlClient()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, m := range mounts {
		g.Go(func() error {
			if _, err := succ.api.LoadLayer(gctx, loadRequest(m.id, m.mountpoint, m.layer)); err != nil {
				metrics.TakeoversRefused.WithLabelValues("load").Inc()
				return fmt.Errorf("mount %s: %w", m.id, err)
			}
			init := m.conn.Init()
			st, err := ctl.Attach(gctx, daemonapi.AttachRequest{MountID: m.id, Resume: &init, DeferResend: deferResend}, m.conn.FD())
			if err != nil {
				reason := "attach"
				if errdefs.IsFailedPrecondition(err) {
					reason = "init_mismatch"
				}
				metrics.TakeoversRefused.WithLabelValues(reason).Inc()
				return fmt.Errorf("mount %s: %w", m.id, err)
			}
			if st.Check() != nil {
				return fmt.Errorf("mount %s: worker answered a takeover with no INIT state: %w", m.id, errdefs.ErrInternal)
			}
			return nil
		})
	}
	return g.Wait()
}

// install makes succ the worker of its id, serving mounts, in place of old.
// The caller holds the id's lock.
func (s *Supervisor) install(ctx context.Context, old, succ *worker, mounts []*mountState) {
	old.mu.Lock()
	old.stopping = true
	for _, m := range mounts {
		delete(old.mounts, m.id)
	}
	old.mu.Unlock()
	succ.mu.Lock()
	for _, m := range mounts {
		succ.mounts[m.id] = m
	}
	succ.servedAt = time.Now().UnixNano()
	succ.mu.Unlock()
	s.mu.Lock()
	s.workers[succ.id] = succ
	s.mu.Unlock()
	s.history.restarted(succ.id) // mgmt API: restart count (status.go)
	if err := s.record(succ); err != nil {
		log.G(ctx).WithError(err).Warn("failed to record the successor in the worker registry")
	}
	// What the old worker was told about its layers' identity.
	for _, m := range mounts {
		old.mu.Lock()
		v := m.verdict
		old.mu.Unlock()
		if v == nil {
			continue
		}
		if err := succ.api.SetVerdict(ctx, m.id, *v); err != nil {
			log.G(ctx).WithError(err).WithField("mount_id", m.id).Warn("failed to tell the successor a layer's verdict")
		}
	}
}

// giveUp ends a failed takeover: the connections are closed (readers get
// errors, never hang), the mounts detached and marked failed, so that
// Prepare reports them instead of starting a container on them.
func (s *Supervisor) giveUp(ctx context.Context, dead *worker, mounts []*mountState, cause error) {
	log.G(ctx).WithError(cause).WithField("mounts", len(mounts)).Error("failover given up: the worker's mounts are failed and their readers get errors; restart the snapshotter or the worker to mount them again")
	metrics.FailoversGivenUp.WithLabelValues(dead.id).Inc()
	s.history.gaveUp(dead.id)
	s.mu.Lock()
	if s.workers[dead.id] == dead {
		s.mu.Unlock()
		s.forget(ctx, dead)
	} else {
		s.mu.Unlock()
	}
	s.detachDead(ctx, mounts)
	for _, m := range mounts {
		s.pending.end(m.id, fmt.Errorf("its worker %s crash-looped: %w", dead.id, cause))
	}
}

// countDeath records the death of w and returns how many quick deaths in a
// row its id has had: a worker that served for CrashLoopWindow or longer
// resets the count.
func (s *Supervisor) countDeath(w *worker) int {
	w.mu.Lock()
	servedAt := w.servedAt
	w.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if servedAt != 0 && time.Since(time.Unix(0, servedAt)) < s.opts.CrashLoopWindow {
		s.quick[w.id]++
	} else {
		s.quick[w.id] = 0
	}
	return s.quick[w.id]
}

// backoff is the wait before the next successor after n failures in a row:
// none for the first, then doubling with jitter up to maxBackoff.
func (s *Supervisor) backoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := s.opts.RestartBackoff << min(n-1, 16)
	d = min(d, maxBackoff)
	return d/2 + rand.N(d/2+1)
}

// takeOverStored takes over, at start-up, the mounts of a worker of the last
// run that died with the snapshotter, from the fds the systemd fd store kept
// and the INIT state in its record. It returns false when nothing could be
// taken over (no fd kept).
func (s *Supervisor) takeOverStored(ctx context.Context, rec record, stored map[string]int) bool {
	dead := &worker{
		id:      rec.ID,
		pid:     rec.PID,
		apiSock: rec.APISocket,
		ctlSock: rec.ControlSocket,
		api:     daemonapi.NewClient(rec.APISocket, rec.ID),
		exited:  make(chan struct{}),
		mounts:  map[string]*mountState{},
	}
	close(dead.exited)
	for id, m := range rec.Mounts {
		fd, ok := stored[id]
		if !ok {
			continue
		}
		delete(stored, id)
		dead.mounts[id] = &mountState{id: id, mountpoint: m.Mountpoint, layer: s.recordedLayer(ctx, id, m), conn: failover.NewConn(fd, m.Init)}
	}
	if len(dead.mounts) == 0 {
		return false
	}
	mounts := dead.mountList()
	s.mu.Lock()
	s.workers[dead.id] = dead
	s.mu.Unlock()
	// Before New returns: Restore must see these mounts as busy, and
	// Prepare must wait for them.
	for _, m := range mounts {
		s.pending.begin(m.id)
	}
	log.G(ctx).WithField("pid", rec.PID).WithField("mounts", len(mounts)).Warn("worker of the last run died with the snapshotter; taking its connections over from the fd store")
	// New has not returned: closing cannot be set yet.
	s.wg.Add(1)
	s.exits.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.exits.Done()
		unlock := s.idLocks.lock(dead.id)
		defer unlock()
		s.takeOver(s.logger(s.ctx, dead.id), dead, mounts, "snapshotter_restart")
	}()
	return true
}

// Replace replaces the worker id by a new process without a crash (a
// planned restart, or an upgrade of lazyfsd): the successor takes every
// connection over while the old worker still serves, then the old one is
// killed and the kernel asked to resend what it held. Containers see no
// error. It returns the successor's pid.
func (s *Supervisor) Replace(ctx context.Context, id string) (int, error) {
	ctx = s.logger(ctx, id)
	unlock := s.idLocks.lock(id)
	defer unlock()
	old := s.current(id)
	if old == nil || old.isExited() {
		return 0, fmt.Errorf("worker %s: %w", id, errdefs.ErrNotFound)
	}
	mounts := old.mountList()
	for _, m := range mounts {
		if !m.conn.CanTakeOver() {
			return 0, fmt.Errorf("worker %s: mount %s has no connection held by the snapshotter: %w", id, m.id, errdefs.ErrFailedPrecondition)
		}
	}
	start := time.Now()
	succ, err := s.startSuccessor(ctx, id, mounts, true)
	if err != nil {
		return 0, fmt.Errorf("worker %s: replacement failed, the old worker serves on: %w", id, err)
	}
	s.install(ctx, old, succ, mounts)
	killWorker(ctx, old.pid, syscall.SIGKILL)
	select {
	case <-old.exited:
	case <-time.After(10 * time.Second):
		log.G(ctx).WithField("pid", old.pid).Error("replaced worker survived SIGKILL")
	}
	var errs []error
	for _, m := range mounts {
		if !m.conn.Init().SupportsResend() {
			continue
		}
		if err := succ.controlClient().Resend(ctx, m.id); err != nil {
			errs = append(errs, err)
		}
	}
	metrics.Failovers.WithLabelValues(id, "planned").Inc()
	metrics.FailoverDuration.Observe(time.Since(start).Seconds())
	log.G(ctx).WithField("old_pid", old.pid).WithField("successor_pid", succ.pid).WithField("mounts", len(mounts)).WithField("duration", time.Since(start)).Info("worker replaced")
	if err := errors.Join(errs...); err != nil {
		return succ.pid, fmt.Errorf("worker %s replaced, but requests the old one held may not be answered: %w", id, err)
	}
	return succ.pid, nil
}
