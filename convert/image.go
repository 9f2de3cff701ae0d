package convert

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/converter"
	"github.com/containerd/log"
)

// IndexConvertFunc returns a converter.ConvertFunc for an index or a
// manifest: it converts the layers of every manifest that matches
// opts.Platform with LayerConvertFunc(opts), rewrites each config's
// rootfs.diff_ids and the GC labels of the new manifests and index, and
// returns the new root descriptor (nil if nothing changed).
//
// Docker media types are rewritten to OCI ones: the converter drops the
// annotations of Docker descriptors, and a layer without its TOC digest
// annotation cannot be mounted lazily.
func IndexConvertFunc(opts Options) converter.ConvertFunc {
	return converter.DefaultIndexConvertFunc(LayerConvertFunc(opts), true, opts.platform())
}

// Image converts the image srcRef known to containerd into an image whose
// layers are eStargz, stored as dstRef (which replaces an existing dstRef;
// dstRef may equal srcRef to convert in place). ctx must carry the
// namespace unless the client has a default one. The new blobs are held by
// a lease until the image record references them.
func Image(ctx context.Context, client *client.Client, srcRef, dstRef string, opts Options) (images.Image, error) {
	return convertImage(ctx, client, srcRef, dstRef, opts)
}

func convertImage(ctx context.Context, c converter.Client, srcRef, dstRef string, opts Options) (images.Image, error) {
	if err := opts.validate(); err != nil {
		return images.Image{}, err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("image_ref", srcRef))
	img, err := converter.Convert(ctx, c, dstRef, srcRef, converter.WithIndexConvertFunc(IndexConvertFunc(opts)))
	if err != nil {
		return images.Image{}, fmt.Errorf("failed to convert image %s to %s: %w", srcRef, dstRef, err)
	}
	log.G(ctx).WithField("target", img.Target.Digest).Info("converted image to eStargz")
	return *img, nil
}
