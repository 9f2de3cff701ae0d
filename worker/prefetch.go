package worker

import (
	"github.com/containerd/containerd/v2/pkg/reference"
	"github.com/containerd/log"
	"github.com/containerd/stargz-snapshotter/estargz"

	"github.com/lazyfs/lazyfs/metrics"
)

// landmark follows a layer's TOC entries to its eStargz prefetch landmark,
// before which its builder put the files a container needs first. The
// first landmark decides: a layer with the no-prefetch landmark, or none,
// gets no prefetch.
type landmark struct {
	off     int64
	found   bool // the prefetch landmark, at off
	decided bool // a landmark was seen
}

// see notes entry e, the next of the TOC.
func (l *landmark) see(e *estargz.TOCEntry) {
	if l.decided {
		return
	}
	switch e.Name {
	case estargz.PrefetchLandmark:
		l.off, l.found, l.decided = e.Offset, true, true
	case estargz.NoPrefetchLandmark:
		l.decided = true
	}
}

// offset returns the blob offset of the prefetch landmark, and whether the
// layer asks for a prefetch at all.
func (l *landmark) offset() (int64, bool) { return l.off, l.found }

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
