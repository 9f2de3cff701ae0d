package snapshot

import (
	"context"

	"github.com/containerd/log"

	"github.com/lazyfs/lazyfs/metrics"
)

// Verify modes (config [layers] verify): when a container may use a lazily
// mounted layer that is not proven yet. docs/threat-model.md says what each
// guarantees.
const (
	// VerifyBeforeShare: at once, unless another image of the container's
	// namespace reaches the layer's chain ID with another blob; then the
	// container's Prepare waits for the proof (bounded by proofWait).
	VerifyBeforeShare = "before-share"
	// VerifyBackground: at once, always. A forged layer is quarantined
	// when its background proof finds it.
	VerifyBackground = "background"
	// VerifyBeforeUse: only once every lazily mounted lower layer is
	// proven. Lazy start is given up for safety.
	VerifyBeforeUse = "before-use"
)

// WithVerify sets when a container may use an unproven layer (one of the
// Verify* modes; anything else is taken as VerifyBeforeShare, the safe
// default) and how many layers are proven in the background at once (0:
// none; only the proofs a container waits for are made).
func WithVerify(mode string, concurrency int) Opt {
	return func(o *options) {
		o.verify = mode
		o.proofConcurrency = concurrency
	}
}

// backgroundProofs bounds the proofs that nobody waits for. A proof that a
// Prepare waits for (mayReuse, a container's Prepare) does not take a slot:
// it jumps the queue, and a queued background proof of the same snapshot
// then joins it (prove runs one proof per snapshot).
type backgroundProofs struct {
	slots chan struct{} // nil: background proofs are off
}

func newBackgroundProofs(concurrency int) backgroundProofs {
	if concurrency <= 0 {
		return backgroundProofs{}
	}
	return backgroundProofs{slots: make(chan struct{}, concurrency)}
}

// queueProof proves the remote snapshot name in the background once a slot
// is free. requester names the image that mounted it, for the incident
// report. It returns at once; the proof's outcome lands in the snapshot's
// labels.
func (s *Snapshotter) queueProof(ctx context.Context, name, requester string) {
	if s.background.slots == nil {
		return
	}
	metrics.ProofsQueued.Inc()
	ctx = log.WithLogger(s.ctx, log.G(ctx).WithField("snapshot", name))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer metrics.ProofsQueued.Dec()
		// proof_concurrency bounds how many layers are proven at once;
		// in the worker the blob stream is paced by [fetch]
		// background_rate. A proof somebody waits for never comes
		// through here, so it never queues behind these.
		select {
		case s.background.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-s.background.slots }()
		select {
		case <-s.prove(ctx, name, requester).done:
		case <-ctx.Done():
		}
	}()
}
