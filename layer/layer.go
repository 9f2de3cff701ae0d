// Package layer is the typed contract between the snapshotter, the
// supervisor and the worker about one lazily loaded layer: what a pull's
// labels say about it, parsed once by the snapshotter (package labels) and
// passed on as a value, so that no later stage parses a label map again.
//
// It depends on digests and error classes only: the supervisor imports it
// and must not import labels (see supervisor's imports test).
package layer

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// MaxImageRefLength bounds an image reference. The worker refuses longer
// ones too (daemonapi); refusing here keeps a hopeless layer from spawning
// a worker.
const MaxImageRefLength = 1024

// Layer describes a lazily loadable layer of an image.
type Layer struct {
	// ImageRef is the reference of the image being pulled: the registry
	// and repository the worker fetches from.
	ImageRef string `json:"image_ref"`
	// ManifestDigest names the image's manifest; it may be empty (not
	// every client sends it), the worker of a per-image supervisor is then
	// named by ImageRef.
	ManifestDigest digest.Digest `json:"manifest_digest,omitempty"`
	// LayerDigest is the digest of the layer's (compressed) blob.
	LayerDigest digest.Digest `json:"layer_digest"`
	// TOCDigest is the digest of the layer's eStargz table of contents,
	// from the layer descriptor's annotation: what the worker verifies the
	// TOC it fetches against.
	TOCDigest digest.Digest `json:"toc_digest"`
	// NextLayers are the digests of the image's layers after this one
	// (containerd's cri.image-layers label, at most MaxNextLayers): a hint
	// for the worker, which resolves them ahead while it loads this one.
	// It may be empty.
	NextLayers []digest.Digest `json:"next_layers,omitempty"`
}

// MaxNextLayers bounds Layer.NextLayers (daemonapi.MaxNextLayers too).
const MaxNextLayers = 128

// Validate checks every field; the error names the field and is of class
// invalid argument.
func (l Layer) Validate() error {
	if err := validateRef(l.ImageRef); err != nil {
		return err
	}
	for _, f := range []struct {
		name     string
		value    digest.Digest
		optional bool
	}{
		{"manifest digest", l.ManifestDigest, true},
		{"layer digest", l.LayerDigest, false},
		{"toc digest", l.TOCDigest, false},
	} {
		if f.value == "" {
			if f.optional {
				continue
			}
			return fmt.Errorf("layer: %s is missing: %w", f.name, errdefs.ErrInvalidArgument)
		}
		if err := f.value.Validate(); err != nil {
			return fmt.Errorf("layer: %s %q: %w: %w", f.name, f.value, errdefs.ErrInvalidArgument, err)
		}
	}
	if len(l.NextLayers) > MaxNextLayers {
		return fmt.Errorf("layer: %d next layers, more than %d: %w", len(l.NextLayers), MaxNextLayers, errdefs.ErrInvalidArgument)
	}
	for _, d := range l.NextLayers {
		if err := d.Validate(); err != nil {
			return fmt.Errorf("layer: next layer %q: %w: %w", d, errdefs.ErrInvalidArgument, err)
		}
	}
	return nil
}

func validateRef(ref string) error {
	switch {
	case ref == "":
		return fmt.Errorf("layer: image ref is missing: %w", errdefs.ErrInvalidArgument)
	case len(ref) > MaxImageRefLength:
		return fmt.Errorf("layer: image ref is %d bytes long, more than %d: %w", len(ref), MaxImageRefLength, errdefs.ErrInvalidArgument)
	case strings.ContainsFunc(ref, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		return fmt.Errorf("layer: image ref %q contains a space or a control character: %w", ref, errdefs.ErrInvalidArgument)
	}
	return nil
}

// String names the layer in logs and errors.
func (l Layer) String() string {
	return fmt.Sprintf("%s of %s", l.LayerDigest, l.ImageRef)
}
