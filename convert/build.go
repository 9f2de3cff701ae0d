package convert

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"maps"
	"strconv"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/labels"
	"github.com/containerd/log"
	"github.com/containerd/stargz-snapshotter/estargz"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ingestPrefix names the content store ingests of built layers, so that an
// operator can tell them apart in `ctr content active`.
const ingestPrefix = "lazyfs-convert-"

// build writes an eStargz rebuild of the tar layer desc into cs and returns
// its descriptor.
func build(ctx context.Context, cs content.Store, desc ocispec.Descriptor, opts Options) (*ocispec.Descriptor, error) {
	ra, err := cs.ReaderAt(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("failed to open layer %s: %w", desc.Digest, err)
	}
	defer ra.Close()

	var missed []string
	blob, err := estargz.Build(io.NewSectionReader(ra, 0, ra.Size()), buildOptions(ctx, opts, &missed)...)
	if err != nil {
		return nil, fmt.Errorf("failed to build eStargz layer from %s: %w", desc.Digest, err)
	}
	defer release(ctx, blob)
	if len(missed) > 0 {
		log.G(ctx).WithField("files", missed).Debug("prioritized files not in layer")
	}

	dgst, size, err := writeBlob(ctx, cs, ingestPrefix+desc.Digest.String(), blob, func() map[string]string {
		// The diffID is known once the blob was read to its end.
		return map[string]string{labels.LabelUncompressed: blob.DiffID().String()}
	})
	if err != nil {
		return nil, fmt.Errorf("failed to store eStargz layer built from %s: %w", desc.Digest, err)
	}
	usize, err := blob.UncompressedSize()
	if err != nil {
		return nil, fmt.Errorf("eStargz layer built from %s: %w", desc.Digest, err)
	}

	out := layerDescriptor(desc)
	out.Digest = dgst
	out.Size = size
	out.Annotations[estargz.TOCJSONDigestAnnotation] = blob.TOCDigest().String()
	out.Annotations[estargz.StoreUncompressedSizeAnnotation] = strconv.FormatInt(usize, 10)
	out.Annotations[labels.LabelUncompressed] = blob.DiffID().String()
	return out, nil
}

func buildOptions(ctx context.Context, opts Options, missed *[]string) []estargz.Option {
	bo := []estargz.Option{
		estargz.WithContext(ctx),
		// Zero is estargz's default chunk size (validate refused a
		// negative one), and no prioritized files gives the layer the
		// no-prefetch landmark.
		estargz.WithChunkSize(opts.ChunkSize),
		estargz.WithPrioritizedFiles(opts.PrioritizedFiles),
		// A prioritized file is usually in one layer of the image only.
		estargz.WithAllowPrioritizeNotFound(missed),
	}
	level := opts.CompressionLevel
	if level == 0 {
		level = gzip.BestCompression // estargz's default
	}
	// Replaces estargz's compressor, which allocates a writer per file.
	bo = append(bo, estargz.WithCompression(newPooledGzip(level)))
	return bo
}

// layerDescriptor returns a copy of desc as an OCI gzip layer, with its own
// annotations map, ready for the caller to fill in.
func layerDescriptor(desc ocispec.Descriptor) *ocispec.Descriptor {
	out := desc
	out.MediaType = ocispec.MediaTypeImageLayerGzip
	out.Annotations = maps.Clone(desc.Annotations)
	if out.Annotations == nil {
		out.Annotations = make(map[string]string)
	}
	return &out
}

// release removes the scratch files of a build and ends its goroutine.
// Blob.Close only removes the files: a goroutine that feeds the blob's pipe
// would stay blocked forever if the blob was not read to its end (a failed
// write). Reading the pipe after the files are closed lets it fail and exit.
func release(ctx context.Context, blob *estargz.Blob) {
	if err := blob.Close(); err != nil {
		log.G(ctx).WithError(err).Warn("failed to remove eStargz build files")
	}
	_, _ = io.Copy(io.Discard, blob)
}
