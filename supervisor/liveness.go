package supervisor

import (
	"context"
	"syscall"
	"time"

	"github.com/containerd/log"

	"github.com/lazyfs/lazyfs/metrics"
)

const (
	// hungMisses is how many health checks in a row a worker may miss
	// before it counts as hung: one slow answer on a loaded node is not.
	hungMisses = 2
	// quitGrace is how long a hung worker has to write its goroutine dump
	// and exit after SIGQUIT before it is killed.
	quitGrace = 3 * time.Second
)

// watchHealth asks w's API for its health every HealthInterval until w exits
// or the supervisor closes. A worker that misses hungMisses checks in a row
// (no answer within HungTimeout) is hung: killHung ends it, and its death
// takes the failover path like any crash. A death itself is seen at once
// by the process watcher, not here.
func (s *Supervisor) watchHealth(w *worker) {
	ctx := s.logger(s.ctx, w.id)
	tick := time.NewTicker(s.opts.HealthInterval)
	defer tick.Stop()
	var misses missedChecks
	for {
		select {
		case <-w.exited:
			return
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		w.mu.Lock()
		stopping := w.stopping
		w.mu.Unlock()
		if stopping {
			continue
		}
		hctx, cancel := context.WithTimeout(ctx, s.opts.HungTimeout)
		err := w.api.Health(hctx)
		cancel()
		// A worker that exited meanwhile is the process watcher's.
		hung := misses.observe(err == nil || w.isExited())
		if err != nil && !w.isExited() {
			log.G(ctx).WithError(err).WithField("pid", w.pid).WithField("misses", int(misses)).Warn("worker missed a health check")
		}
		if hung {
			s.killHung(ctx, w)
			return
		}
	}
}

// missedChecks counts the health checks a worker missed in a row.
type missedChecks int

// observe records one check's outcome and reports whether the worker now
// counts as hung: hungMisses misses in a row; an answer starts over.
func (m *missedChecks) observe(answered bool) (hung bool) {
	if answered {
		*m = 0
		return false
	}
	*m++
	return *m >= hungMisses
}

// killHung ends a hung worker: SIGQUIT first, so that the Go runtime writes
// every goroutine's stack to its log (SIGCONT as well: a stopped process
// handles no signal but SIGKILL), then SIGKILL if it has not exited.
func (s *Supervisor) killHung(ctx context.Context, w *worker) {
	log.G(ctx).WithField("pid", w.pid).WithField("hung_timeout", s.opts.HungTimeout).Error("worker hung: sending SIGQUIT for a goroutine dump, then SIGKILL; its mounts fail over")
	metrics.HungWorkers.WithLabelValues(w.id).Inc()
	w.mu.Lock()
	w.hung = true
	w.mu.Unlock()
	killWorker(ctx, w.pid, syscall.SIGQUIT)
	killWorker(ctx, w.pid, syscall.SIGCONT)
	select {
	case <-w.exited:
	case <-time.After(quitGrace):
		log.G(ctx).WithField("pid", w.pid).Warn("hung worker did not exit on SIGQUIT; killing it")
		killWorker(ctx, w.pid, syscall.SIGKILL)
	case <-s.ctx.Done():
	}
}
