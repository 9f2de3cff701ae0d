package chunks

import (
	"context"
	"sync"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
)

// outage tracks whether a layer's source is failing, so that an
// unreachable registry is logged once per layer and outage rather than once
// per read: with the registry down, every read of data not cached fails,
// and a container retrying them would bury the log. It is safe for
// concurrent use; the zero value is a source that works.
type outage struct {
	mu    sync.Mutex
	down  bool
	fails int64 // requests that failed since the outage began
}

// failed records a failed request; the first of an outage is logged.
func (o *outage) failed(ctx context.Context, layer digest.Digest, err error) {
	o.mu.Lock()
	first := !o.down
	o.down = true
	o.fails++
	o.mu.Unlock()
	if first {
		log.G(ctx).WithError(err).WithField("layer_digest", layer).
			Error("registry unreachable: reads of data not cached fail until it is back")
	}
}

// ended records a request that succeeded, which ends an outage.
func (o *outage) ended(ctx context.Context, layer digest.Digest) {
	o.mu.Lock()
	was, fails := o.down, o.fails
	o.down, o.fails = false, 0
	o.mu.Unlock()
	if was {
		log.G(ctx).WithField("layer_digest", layer).WithField("failed_requests", fails).
			Info("registry reachable again")
	}
}
