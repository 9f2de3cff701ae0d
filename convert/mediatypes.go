package convert

import (
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/stargz-snapshotter/estargz"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// buildable reports whether a layer of this media type is a plain tar,
// possibly compressed, that estargz.Build can read. Foreign and
// non-distributable layers are left alone: their blobs usually are not in
// the content store and must not be pushed. Encrypted layers are opaque.
func buildable(mediaType string) bool {
	switch mediaType {
	case ocispec.MediaTypeImageLayer,
		ocispec.MediaTypeImageLayerGzip,
		ocispec.MediaTypeImageLayerZstd,
		images.MediaTypeDockerSchema2Layer,
		images.MediaTypeDockerSchema2LayerGzip,
		images.MediaTypeDockerSchema2LayerZstd:
		return true
	}
	return false
}

// gzipped reports whether a layer of this media type may already be an
// eStargz blob (eStargz is a gzip stream).
func gzipped(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageLayerGzip ||
		mediaType == images.MediaTypeDockerSchema2LayerGzip
}

// annotated reports whether a layer already names its table of contents,
// which is all a lazy mount needs to trust it.
func annotated(desc ocispec.Descriptor) bool {
	return desc.Annotations[estargz.TOCJSONDigestAnnotation] != ""
}
