package convert

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/converter"
	"github.com/containerd/log"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"
)

// LayerConvertFunc returns a converter.ConvertFunc that converts a gzip,
// zstd or uncompressed tar layer (OCI or Docker media type) into an eStargz
// layer in the same content store and returns its descriptor: an OCI gzip
// layer annotated with its TOC digest, uncompressed size and diffID. The
// blob is labelled containerd.io/uncompressed as well, which spares
// containerd's converter from decompressing it to rewrite the config's
// diff_ids.
//
// It returns nil (unchanged) for descriptors that are not layers, for layers
// that already carry a TOC digest annotation, and for layers it cannot read
// (foreign, non-distributable, encrypted).
//
// One returned function converts each source layer once, however many
// manifests name it: the converter maps old to new diffIDs image-wide, so
// two different rebuilds of one layer would leave some config wrong.
func LayerConvertFunc(opts Options) converter.ConvertFunc {
	lc := &layerConverter{
		opts: opts,
		// estargz.Build already compresses on every core; more concurrent
		// builds would only add scratch space.
		builds: semaphore.NewWeighted(int64(runtime.GOMAXPROCS(0))),
		done:   make(map[digest.Digest]ocispec.Descriptor),
	}
	return lc.convert
}

type layerConverter struct {
	opts   Options
	builds *semaphore.Weighted
	flight singleflight.Group

	mu   sync.Mutex
	done map[digest.Digest]ocispec.Descriptor // source layer → converted layer
}

func (lc *layerConverter) convert(ctx context.Context, cs content.Store, desc ocispec.Descriptor) (*ocispec.Descriptor, error) {
	if !images.IsLayerType(desc.MediaType) {
		return nil, nil
	}
	if err := lc.opts.validate(); err != nil {
		return nil, err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("layer_digest", desc.Digest))
	if (annotated(desc) && !lc.opts.Rebuild) || !buildable(desc.MediaType) {
		log.G(ctx).WithField("media_type", desc.MediaType).Debug("layer left as it is")
		lc.opts.report(Event{Digest: desc.Digest, Size: desc.Size, Done: true})
		return nil, nil
	}

	if out, ok := lc.converted(ctx, cs, desc.Digest); ok {
		return out, nil
	}
	v, err, _ := lc.flight.Do(desc.Digest.String(), func() (any, error) {
		if out, ok := lc.converted(ctx, cs, desc.Digest); ok {
			return out, nil
		}
		out, err := lc.convertLayer(ctx, cs, desc)
		if err != nil {
			return nil, err
		}
		lc.mu.Lock()
		lc.done[desc.Digest] = *out
		lc.mu.Unlock()
		return out, nil
	})
	if err != nil {
		return nil, err
	}
	// Callers modify what they get (the converter rewrites media types).
	return cloneDescriptor(*v.(*ocispec.Descriptor)), nil
}

// converted returns the earlier result for the source layer src if its blob
// is still in cs.
func (lc *layerConverter) converted(ctx context.Context, cs content.Store, src digest.Digest) (*ocispec.Descriptor, bool) {
	lc.mu.Lock()
	out, ok := lc.done[src]
	lc.mu.Unlock()
	if !ok {
		return nil, false
	}
	if _, err := cs.Info(ctx, out.Digest); err != nil {
		// Garbage collected since, or another store: convert again. The
		// new result replaces this one in done.
		return nil, false
	}
	return cloneDescriptor(out), true
}

// convertLayer does the work for one source layer, reporting its progress.
func (lc *layerConverter) convertLayer(ctx context.Context, cs content.Store, desc ocispec.Descriptor) (out *ocispec.Descriptor, err error) {
	if err := lc.builds.Acquire(ctx, 1); err != nil {
		return nil, fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	defer lc.builds.Release(1)

	start := time.Now()
	lc.opts.report(Event{Digest: desc.Digest, Size: desc.Size})
	defer func() {
		ev := Event{Digest: desc.Digest, Size: desc.Size, Done: true, Err: err}
		if out != nil {
			ev.Converted = cloneDescriptor(*out)
		}
		lc.opts.report(ev)
	}()

	if gzipped(desc.MediaType) && !lc.opts.Rebuild {
		if out, err = adopt(ctx, cs, desc); err != nil {
			return nil, err
		}
		if out != nil {
			log.G(ctx).Info("annotated existing eStargz layer")
			return out, nil
		}
	}
	out, err = build(ctx, cs, desc, lc.opts)
	if err != nil {
		return nil, err
	}
	log.G(ctx).WithFields(log.Fields{
		"digest":   out.Digest,
		"size":     out.Size,
		"duration": time.Since(start),
	}).Info("converted layer to eStargz")
	return out, nil
}

func cloneDescriptor(d ocispec.Descriptor) *ocispec.Descriptor {
	d.Annotations = maps.Clone(d.Annotations)
	return &d
}
