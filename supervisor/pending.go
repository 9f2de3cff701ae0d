package supervisor

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
)

// pendingMounts tracks the layers being mounted again, after a restart of
// the snapshotter or the death of their worker. Until a layer is mounted
// again its mountpoint is an empty directory: a container prepared in that
// window must wait for it (or fail), never start on a partial image.
type pendingMounts struct {
	mu      sync.Mutex
	waiting map[string]chan struct{} // by mount id; closed when done
	failed  map[string]error         // by mount id: why mounting again failed
}

func newPendingMounts() *pendingMounts {
	return &pendingMounts{waiting: map[string]chan struct{}{}, failed: map[string]error{}}
}

// begin marks a mount as being mounted again.
func (p *pendingMounts) begin(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.failed, id)
	if _, ok := p.waiting[id]; !ok {
		p.waiting[id] = make(chan struct{})
	}
}

// end marks it done; err says why it could not be mounted again.
func (p *pendingMounts) end(id string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.failed[id] = err
	}
	if ch, ok := p.waiting[id]; ok {
		close(ch)
		delete(p.waiting, id)
	}
}

// forget drops what is known of a mount (it was removed).
func (p *pendingMounts) forget(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.failed, id)
}

// wait returns once the mount is no longer pending: nil if it was mounted
// again (or was never pending), its failure otherwise.
func (p *pendingMounts) wait(ctx context.Context, id string) error {
	p.mu.Lock()
	ch := p.waiting[id]
	p.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("layer %s is still being mounted again: %w", id, errdefs.ErrUnavailable)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.failed[id]; err != nil {
		return fmt.Errorf("layer %s could not be mounted again: %v: %w", id, err, errdefs.ErrUnavailable)
	}
	return nil
}

// Wait returns once none of the given mount ids is being mounted again. A
// snapshot whose lower layers include a lazily loaded layer calls it before
// handing out mounts; ids that are no remote mounts return at once.
func (s *Supervisor) Wait(ctx context.Context, ids []string) error {
	for _, id := range ids {
		if err := s.pending.wait(ctx, id); err != nil {
			return err
		}
	}
	return nil
}
