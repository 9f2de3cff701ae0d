package worker

import (
	"context"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/metrics"
	"github.com/lazyfs/lazyfs/remote"
	"github.com/lazyfs/lazyfs/toc"
)

// Resolving the next layers of an image ahead of their Prepare: containerd
// prepares an image's layers one after the other, each waiting for the one
// before, and each load needs a round trip to the registry for its footer
// and TOC. At the first lazy load of an image the worker starts fetching
// those of the layers after it (the cri.image-layers label), a few at once,
// so that their loads find them at hand: a load then makes no request.
//
// Nothing is trusted ahead: a layer's TOC digest comes with its own load,
// which verifies the bytes fetched ahead (toc.Fetch) exactly as it verifies
// the registry's. What is fetched ahead is held in memory until claimed
// (aheadTTL at most, aheadBudget bytes in all); a failure only means that
// the layer's own load fetches it, as without this.
const (
	// aheadConcurrency bounds the layers resolved ahead at once, per
	// worker.
	aheadConcurrency = 4
	// aheadBudget bounds the bytes held for layers not claimed yet; layers
	// beyond it are not resolved ahead.
	aheadBudget = 64 << 20
	// aheadTTL is how long a layer's bytes wait for its load: containerd
	// prepares the next layer within moments, unless the pull stopped.
	aheadTTL = 2 * time.Minute
)

// ahead holds the layers being resolved, or resolved, ahead of their load.
type ahead struct {
	sem    chan struct{}
	budget int64 // aheadBudget; smaller in tests

	mu      sync.Mutex
	entries map[digest.Digest]*aheadEntry // by layer digest
	bytes   int64                         // region bytes of the entries held
}

type aheadEntry struct {
	done   chan struct{} // closed once blob, region and err are set
	blob   *remote.Blob
	region []byte // compressed TOC and footer (toc.Region)
	err    error
}

func newAhead() *ahead {
	return &ahead{sem: make(chan struct{}, aheadConcurrency), budget: aheadBudget, entries: map[digest.Digest]*aheadEntry{}}
}

// start resolves each layer of layers not held or in flight already, in
// the background, within ctx (the worker's life). A layer over the budget
// is skipped.
func (a *ahead) start(ctx context.Context, res *remote.Resolver, ref string, layers []digest.Digest, tailBytes int, lim toc.Limits) {
	var started []digest.Digest
	for _, d := range layers {
		a.mu.Lock()
		_, held := a.entries[d]
		full := a.bytes >= a.budget
		var e *aheadEntry
		if !held && !full {
			e = &aheadEntry{done: make(chan struct{})}
			a.entries[d] = e
		}
		a.mu.Unlock()
		if full {
			metrics.LayersResolvedAhead.WithLabelValues("unused").Inc()
			continue
		}
		if held {
			continue
		}
		started = append(started, d)
		go a.resolve(ctx, res, ref, d, e, tailBytes, lim)
	}
	if len(started) > 0 {
		log.G(ctx).WithFields(log.Fields{"image_ref": ref, "layers": len(started)}).Debug("resolving the image's next layers ahead")
	}
}

// resolve fetches d's region for e, which holds d's place until claimed
// (take) or dropped.
func (a *ahead) resolve(ctx context.Context, res *remote.Resolver, ref string, d digest.Digest, e *aheadEntry, tailBytes int, lim toc.Limits) {
	ctx = log.WithLogger(ctx, log.G(ctx).WithFields(log.Fields{"image_ref": ref, "layer_digest": d}))
	var blob *remote.Blob
	var region []byte
	var err error
	select {
	case a.sem <- struct{}{}:
		var tail []byte
		if blob, tail, err = res.BlobTail(ctx, ref, d, tailBytes); err == nil {
			region, err = toc.Region(ctx, toc.WithTail(blob, tail), lim)
		}
		<-a.sem
	case <-ctx.Done():
		err = ctx.Err()
	}
	a.mu.Lock()
	e.blob, e.region, e.err = blob, region, err
	close(e.done)
	a.bytes += int64(len(region))
	a.mu.Unlock()
	if err != nil {
		// Not a layer of ours to judge: its own load decides (and logs).
		log.G(ctx).WithError(err).Debug("layer not resolved ahead; its load fetches it")
		metrics.LayersResolvedAhead.WithLabelValues("failed").Inc()
		a.drop(d, e, false)
		return
	}
	time.AfterFunc(aheadTTL, func() { a.drop(d, e, true) })
}

// drop forgets e if it still holds d's place.
func (a *ahead) drop(d digest.Digest, e *aheadEntry, unused bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.entries[d] != e {
		return // claimed already
	}
	delete(a.entries, d)
	a.bytes -= int64(len(e.region))
	if unused {
		metrics.LayersResolvedAhead.WithLabelValues("unused").Inc()
	}
}

// take claims layer d's bytes fetched ahead: its blob and a tail (the
// compressed TOC and footer) for toc.WithTail, waiting for a resolution in
// flight as long as ctx allows. ok is false when d was not resolved ahead
// or that failed.
func (a *ahead) take(ctx context.Context, d digest.Digest) (_ *remote.Blob, tail []byte, ok bool) {
	a.mu.Lock()
	e := a.entries[d]
	a.mu.Unlock()
	if e == nil {
		return nil, nil, false
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		return nil, nil, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if e.err != nil || a.entries[d] != e {
		return nil, nil, false
	}
	delete(a.entries, d)
	a.bytes -= int64(len(e.region))
	metrics.LayersResolvedAhead.WithLabelValues("used").Inc()
	return e.blob, e.region, true
}
