package ctl

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lazyfs/lazyfs/convert"
)

// convertRequest is what `image convert` was asked to do.
type convertRequest struct {
	src, dst   string
	chunkSize  int
	prioritize []string
	level      int
	rebuild    bool             // rebuild eStargz layers too (image optimize)
	push       *resolverOptions // nil: do not push
}

// convertImage converts req.src to eStargz as req.dst, reporting each layer,
// and pushes req.dst if asked.
func convertImage(ctx context.Context, a *app, req convertRequest) error {
	start := time.Now()
	var pushRef string
	if req.push != nil {
		// Checked before the work, not after it.
		named, err := reference.ParseDockerRef(req.dst)
		if err != nil {
			return fmt.Errorf("cannot push %q: %v: %w", req.dst, err, errdefs.ErrInvalidArgument)
		}
		pushRef = named.String()
	}
	ctx, c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	out := &lineWriter{w: a.stdout}
	out.printf("converting %s to %s", req.src, req.dst)
	var progress convertProgress
	progress.out = out
	img, err := convert.Image(ctx, c, req.src, req.dst, convert.Options{
		ChunkSize:        req.chunkSize,
		PrioritizedFiles: req.prioritize,
		CompressionLevel: req.level,
		Rebuild:          req.rebuild,
		Progress:         progress.report,
	})
	if err != nil {
		return err
	}
	converted, kept, failed := progress.counts()
	out.printf("image %s (%s): %d layers converted, %d kept as they were", img.Name, shortDigest(img.Target.Digest), converted, kept)
	if failed > 0 {
		// convert.Image fails when a layer does; this is a safety net.
		return fmt.Errorf("%d layers failed to convert", failed)
	}

	if req.push != nil {
		out.printf("pushing %s", pushRef)
		err := c.Push(ctx, pushRef, img.Target,
			client.WithResolver(newResolver(ctx, *req.push)),
			client.WithImageHandlerWrapper(pushReporter(out)))
		if err != nil {
			return fmt.Errorf("converted %s to %s, but failed to push it: %w", req.src, req.dst, err)
		}
		out.printf("pushed %s", pushRef)
	}
	out.printf("done in %s", time.Since(start).Round(time.Millisecond))
	return nil
}

// convertProgress prints convert.Events, which arrive from several
// goroutines, and counts the outcomes.
type convertProgress struct {
	out *lineWriter

	mu                      sync.Mutex
	converted, kept, failed int
}

func (p *convertProgress) report(ev convert.Event) {
	layer := "layer " + shortDigest(ev.Digest)
	switch {
	case !ev.Done:
		p.out.printf("%s converting (%s)", layer, formatSize(ev.Size))
		return
	case ev.Err != nil:
		p.count(&p.failed)
		p.out.printf("%s failed: %v", layer, ev.Err)
	case ev.Converted == nil:
		p.count(&p.kept)
		p.out.printf("%s kept as it is", layer)
	case ev.Converted.Digest == ev.Digest:
		p.count(&p.converted)
		p.out.printf("%s already eStargz, annotated", layer)
	default:
		p.count(&p.converted)
		p.out.printf("%s converted to %s (%s)", layer, shortDigest(ev.Converted.Digest), formatSize(ev.Converted.Size))
	}
}

func (p *convertProgress) count(n *int) {
	p.mu.Lock()
	*n++
	p.mu.Unlock()
}

func (p *convertProgress) counts() (converted, kept, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.converted, p.kept, p.failed
}

// pushReporter prints each layer and config once it is pushed. Manifests
// and indexes are only collected under the wrapper and pushed after it
// (remotes.PushContent), so they are not reported here.
func pushReporter(out *lineWriter) func(images.Handler) images.Handler {
	return func(h images.Handler) images.Handler {
		return images.HandlerFunc(func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
			children, err := h.Handle(ctx, desc)
			if err == nil && !images.IsManifestType(desc.MediaType) && !images.IsIndexType(desc.MediaType) {
				out.printf("pushed %s %s (%s)", blobKind(desc.MediaType), shortDigest(desc.Digest), formatSize(desc.Size))
			}
			return children, err
		})
	}
}

func blobKind(mediaType string) string {
	switch {
	case images.IsLayerType(mediaType):
		return "layer"
	case images.IsConfigType(mediaType):
		return "config"
	default:
		return "blob"
	}
}
