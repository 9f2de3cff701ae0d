package convert

import (
	"compress/gzip"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Options says how layers are converted. The zero value is valid.
type Options struct {
	// ChunkSize is the largest uncompressed size of one chunk of a regular
	// file, the unit a lazy read fetches and verifies. Zero selects
	// estargz's default (4 MiB).
	ChunkSize int

	// PrioritizedFiles are paths (relative to the layer's root, a leading
	// "/" is allowed) put first in every layer that holds them, followed by
	// the prefetch landmark, so that a lazy mount can prefetch them before
	// anything else. A path missing from a layer is not an error: an image
	// spreads its files over several layers.
	PrioritizedFiles []string

	// Rebuild rebuilds layers that are eStargz already (annotated or not)
	// instead of leaving or annotating them: what putting PrioritizedFiles
	// first in an eStargz image takes. Their old TOC and landmarks are
	// dropped and written anew.
	Rebuild bool

	// CompressionLevel is the gzip level of the new layers, from
	// gzip.HuffmanOnly (-2) to gzip.BestCompression (9). Zero selects
	// gzip.BestCompression, estargz's default, rather than
	// gzip.NoCompression: an uncompressed lazy layer only costs bandwidth.
	CompressionLevel int

	// Platform selects the manifests of an index to convert; the others are
	// dropped from the converted index. Nil selects the host's platform
	// (platforms.Default()). platforms.All keeps every manifest, and so
	// fails on an image pulled for one platform only: the other manifests
	// are not in the content store.
	Platform platforms.MatchComparer

	// Progress, if set, is called when the conversion of a layer starts and
	// when it ends; a layer that several manifests share is converted and
	// reported once. A layer left as it is only reports its end. Layers
	// are converted concurrently, so it may be called from several
	// goroutines at once; it must not block for long.
	Progress func(Event)
}

// Event reports the progress of one layer.
type Event struct {
	// Digest and Size name the source layer.
	Digest digest.Digest
	Size   int64
	// Done is false when work on the layer starts and true when it ended.
	Done bool
	// Converted is the resulting eStargz layer, set when Done and the
	// layer was converted (or an existing eStargz blob was annotated).
	// It is nil for a layer left as it is.
	Converted *ocispec.Descriptor
	// Err is why the conversion of the layer failed, when Done.
	Err error
}

func (o Options) validate() error {
	if o.ChunkSize < 0 {
		return fmt.Errorf("chunk size %d is negative: %w", o.ChunkSize, errdefs.ErrInvalidArgument)
	}
	if o.CompressionLevel < gzip.HuffmanOnly || o.CompressionLevel > gzip.BestCompression {
		return fmt.Errorf("compression level %d is outside [%d, %d]: %w",
			o.CompressionLevel, gzip.HuffmanOnly, gzip.BestCompression, errdefs.ErrInvalidArgument)
	}
	return nil
}

func (o Options) platform() platforms.MatchComparer {
	if o.Platform == nil {
		return platforms.Default()
	}
	return o.Platform
}

func (o Options) report(ev Event) {
	if o.Progress != nil {
		o.Progress(ev)
	}
}
