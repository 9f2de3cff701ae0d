package worker

import (
	"context"
	"time"

	"github.com/containerd/log"
)

// idleState tracks whether a worker has anything to serve, for
// Options.ExitWhenIdle. A worker's mounts go away when their layers are
// removed (image garbage collection) or the snapshotter stops; a grace
// spares a respawn when the same image comes back at once.
type idleState struct {
	loading int    // LoadLayer calls in flight: a mount is on its way
	gen     uint64 // bumped by each idleFrom: only the newest timer counts
}

// idleFrom starts the idle grace: the worker exits once it has had no mount
// and no load in flight for Options.IdleTimeout. The caller has seen no
// mount left; w.mu is not held.
func (w *Worker) idleFrom(ctx context.Context) {
	if w.opts.IdleTimeout <= 0 {
		log.G(ctx).Info("last mount detached; exiting")
		w.exit()
		return
	}
	w.mu.Lock()
	w.idle.gen++
	gen := w.idle.gen
	w.mu.Unlock()
	log.G(ctx).WithField("idle_timeout", w.opts.IdleTimeout).Info("no mount left; exiting unless one comes")
	// The worker's ctx, not the caller's: Close cancels it, and a grace
	// that ends after Close does nothing.
	time.AfterFunc(w.opts.IdleTimeout, func() { w.idleExpired(w.ctx, gen) })
}

// idleExpired ends the grace started as generation gen.
func (w *Worker) idleExpired(ctx context.Context, gen uint64) {
	if ctx.Err() != nil {
		return
	}
	w.mu.Lock()
	stale := gen != w.idle.gen
	busy := len(w.mounts) > 0
	loading := w.idle.loading > 0
	w.mu.Unlock()
	switch {
	case stale, busy:
		// A newer grace runs, or a mount came: its last detach starts
		// the next one.
	case loading:
		w.idleFrom(ctx)
	default:
		log.G(ctx).WithField("idle_timeout", w.opts.IdleTimeout).Info("idle; exiting")
		w.exit()
	}
}

// loaded ends a LoadLayer: one that failed may leave the worker idle.
func (w *Worker) loaded() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.idle.loading--
}
