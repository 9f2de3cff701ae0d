package cache

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
)

// layerUsage is how much of a layer the cache holds: the decompressed
// bytes and the number of its distinct chunks that are cached.
type layerUsage struct {
	bytes, chunks int64
}

// CachedBytes returns the bytes and chunks of layer the cache held at the
// end of the last pass, and false if no worker recorded the layer (see
// Store.PutLayer) or no pass ran yet. A chunk two layers share counts for
// both.
func (e *Evictor) CachedBytes(layer digest.Digest) (size, chunks int64, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	u, ok := e.usage[layer]
	return u.bytes, u.chunks, ok
}

// updateUsage recomputes every recorded layer's usage from the chunk files
// a pass left. Indexes are immutable, so each is read once and kept.
func (e *Evictor) updateUsage(ctx context.Context, files []cachedFile) {
	present := make(map[digest.Digest]int64, len(files))
	for _, f := range files {
		if d := digestOf(f.path); d != "" && !f.evicted {
			present[d] = f.size
		}
	}
	usage := map[digest.Digest]layerUsage{}
	for _, layer := range e.recordedLayers(ctx) {
		refs, ok := e.indexes[layer]
		if !ok {
			path, _ := layerPath(e.dir, layer)
			var err error
			if refs, err = readLayer(path); err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					log.G(ctx).WithError(err).WithField("layer_digest", layer).Warn("unusable layer index in the chunk cache")
				}
				continue
			}
			e.indexes[layer] = refs
		}
		var u layerUsage
		for _, r := range refs {
			if size, ok := present[r.Digest]; ok && size == r.Size {
				u.bytes += size
				u.chunks++
			}
		}
		usage[layer] = u
	}
	for layer := range e.indexes {
		if _, ok := usage[layer]; !ok {
			delete(e.indexes, layer) // its index is gone
		}
	}
	e.mu.Lock()
	e.usage = usage
	e.mu.Unlock()
}

// recordedLayers lists the layers that have an index.
func (e *Evictor) recordedLayers(ctx context.Context) []digest.Digest {
	root := filepath.Join(e.dir, layersDir)
	algs, err := os.ReadDir(root)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			log.G(ctx).WithError(err).WithField("path", root).Warn("failed to list the chunk cache's layer indexes")
		}
		return nil
	}
	var layers []digest.Digest
	for _, alg := range algs {
		names, err := os.ReadDir(filepath.Join(root, alg.Name()))
		if err != nil {
			continue
		}
		for _, n := range names {
			d := digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), n.Name())
			if d.Validate() == nil {
				layers = append(layers, d)
			}
		}
	}
	return layers
}
