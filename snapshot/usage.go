package snapshot

import (
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/labels"
)

// CachedLayers tells how much of a layer the node's chunk cache holds; the
// cache's Evictor implements it.
type CachedLayers interface {
	// CachedBytes returns the decompressed bytes and the number of chunks
	// of layer that are cached, and false when the cache knows nothing of
	// the layer.
	CachedBytes(layer digest.Digest) (size, chunks int64, ok bool)
}

// WithCachedLayers makes Usage of a remote snapshot report the cached
// bytes of its layer: what the node's disk holds for it, since its files
// take no space under the snapshot's own directory.
func WithCachedLayers(c CachedLayers) Opt {
	return func(o *options) { o.cached = c }
}

// remoteUsage adds the cached bytes (Size) and chunk files (Inodes) of a
// remote snapshot's layer to usage. A chunk two layers share counts for
// both, as a file two images hold would in a plain unpack.
func (s *Snapshotter) remoteUsage(info snapshots.Info, usage snapshots.Usage) snapshots.Usage {
	if s.cached == nil || !isRemote(info) {
		return usage
	}
	layer, err := labels.ParseLayer(info.Labels)
	if err != nil {
		return usage
	}
	if size, chunks, ok := s.cached.CachedBytes(layer.LayerDigest); ok {
		usage.Size += size
		usage.Inodes += chunks
	}
	return usage
}
