package snapshot

import (
	"context"
	"sync"

	"github.com/containerd/log"

	"github.com/lazyfs/lazyfs/metrics"
)

// ForgedRemover removes containerd's snapshots of layers found forged once
// nothing uses them (issue 14, point 2). lazyfs cannot do it alone:
// containerd keeps its own record of each namespace's snapshots, and while
// that record names the chain ID its unpacker skips the layer, so an honest
// image would never get its real layer.
type ForgedRemover interface {
	// RemoveForged removes every unused forged snapshot and returns how
	// many it removed and how many are still in use.
	RemoveForged(ctx context.Context) (removed, inUse int, err error)
}

// WithForgedRemover turns on the removal of forged layers' snapshots.
func WithForgedRemover(r ForgedRemover) Opt {
	return func(o *options) { o.forgedRemover = r }
}

// forgedSweep runs at most one sweep at a time; again records that another
// was asked for meanwhile (a container removed, a new forgery found).
type forgedSweep struct {
	mu      sync.Mutex
	running bool
	again   bool
	inUse   int // forged snapshots still in use after the last sweep
}

// sweepForged removes the forged snapshots nothing uses any more, in the
// background: it is called from within containerd's calls (a Remove, the
// end of a proof a Prepare waits for), and containerd cannot serve our
// removal while its own call holds its metadata store.
func (s *Snapshotter) sweepForged(ctx context.Context, found bool) {
	if s.forgedRemover == nil {
		return
	}
	s.sweep.mu.Lock()
	if !found && s.sweep.inUse == 0 && !s.sweep.running {
		s.sweep.mu.Unlock()
		return // nothing was left behind: a Remove costs nothing
	}
	if s.sweep.running {
		s.sweep.again = true
		s.sweep.mu.Unlock()
		return
	}
	s.sweep.running = true
	s.sweep.mu.Unlock()

	ctx = log.WithLogger(s.ctx, log.G(ctx))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			removed, inUse, err := s.forgedRemover.RemoveForged(ctx)
			metrics.ForgedSnapshotsRemoved.Add(float64(removed))
			if err != nil {
				log.G(ctx).WithError(err).Warn("failed to remove forged layers' snapshots; retried at the next removal")
				inUse++ // keep trying at each Remove
			} else if inUse > 0 {
				log.G(ctx).WithField("in_use", inUse).Warn("forged layers' snapshots still in use; removed once their containers are")
			}
			s.sweep.mu.Lock()
			s.sweep.inUse = inUse
			if !s.sweep.again || ctx.Err() != nil {
				s.sweep.running = false
				s.sweep.mu.Unlock()
				return
			}
			s.sweep.again = false
			s.sweep.mu.Unlock()
		}
	}()
}
