package worker

import (
	"github.com/containerd/containerd/v2/pkg/reference"
	"github.com/containerd/log"
	"github.com/containerd/stargz-snapshotter/estargz"

	"github.com/lazyfs/lazyfs/metrics"
)

// prefetchLandmark returns the blob offset of the layer's eStargz prefetch
// landmark, before which its builder put the files a container needs first,
// and whether the layer asks for a prefetch at all: a layer with the
// no-prefetch landmark, or none, gets none.
func prefetchLandmark(toc *estargz.JTOC) (int64, bool) {
	for _, e := range toc.Entries {
		switch e.Name {
		case estargz.PrefetchLandmark:
			return e.Offset, true
		case estargz.NoPrefetchLandmark:
			return 0, false
		}
	}
	return 0, false
}

// registryOf names the registry of an image reference, which the fetch
// scheduler limits requests per; a reference that does not parse is its
// own key (the load refuses it anyway).
func registryOf(ref string) string {
	spec, err := reference.Parse(ref)
	if err != nil {
		return ref
	}
	return spec.Hostname()
}

// startPrefetch fetches the layer's prioritized files in the background,
// once per mount, at the scheduler's prefetch class: reads a container
// waits on go first. It stops when the mount is detached.
func (m *mount) startPrefetch() {
	m.prefetching.Do(func() {
		if len(m.prioritized) == 0 {
			return
		}
		layer := m.req.LayerDigest
		var total int64
		for _, c := range m.prioritized {
			total += c.Size
		}
		metrics.PrefetchBytes.WithLabelValues(layer).Set(float64(total))
		doneGauge := metrics.PrefetchDoneBytes.WithLabelValues(layer)
		doneGauge.Set(0)
		cs := m.prioritized
		m.prioritized = nil // the mount no longer needs them
		m.w.background.Add(1)
		go func() {
			defer m.w.background.Done()
			ctx := m.life
			log.G(ctx).WithField("chunks", len(cs)).WithField("bytes", total).Info("prefetching the layer's prioritized files")
			err := m.reader.Prefetch(ctx, cs, func(done int64) { doneGauge.Set(float64(done)) })
			if err != nil {
				log.G(ctx).WithError(err).Debug("prefetch stopped")
				return
			}
			log.G(ctx).WithField("bytes", total).Info("prioritized files prefetched")
		}()
	})
}

// close ends the mount's background work and forgets its series.
func (m *mount) close() {
	m.end()
	metrics.PrefetchBytes.DeleteLabelValues(m.req.LayerDigest)
	metrics.PrefetchDoneBytes.DeleteLabelValues(m.req.LayerDigest)
}
