package convert

import (
	"testing"

	"github.com/containerd/containerd/v2/core/images"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestMediaTypes pins which layers are rebuilt, which may be adopted as
// eStargz already (gzip, OCI's or Docker's) and which are left alone
// (foreign, non-distributable, encrypted, not a layer).
func TestMediaTypes(t *testing.T) {
	for _, tc := range []struct {
		mediaType          string
		buildable, gzipped bool
	}{
		{ocispec.MediaTypeImageLayer, true, false},
		{ocispec.MediaTypeImageLayerGzip, true, true},
		{ocispec.MediaTypeImageLayerZstd, true, false},
		{images.MediaTypeDockerSchema2Layer, true, false},
		{images.MediaTypeDockerSchema2LayerGzip, true, true},
		{images.MediaTypeDockerSchema2LayerZstd, true, false},
		{images.MediaTypeDockerSchema2LayerForeignGzip, false, false},
		{"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", false, false}, // deprecated by OCI, still found
		{"application/vnd.oci.image.layer.v1.tar+gzip+encrypted", false, false},
		{ocispec.MediaTypeImageConfig, false, false},
	} {
		if got := buildable(tc.mediaType); got != tc.buildable {
			t.Errorf("buildable(%s) = %v, want %v", tc.mediaType, got, tc.buildable)
		}
		if got := gzipped(tc.mediaType); got != tc.gzipped {
			t.Errorf("gzipped(%s) = %v, want %v", tc.mediaType, got, tc.gzipped)
		}
	}
}
