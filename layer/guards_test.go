package layer

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

const (
	d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	d3 = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
)

func valid() Layer {
	return Layer{ImageRef: "127.0.0.1:5000/img:v1", ManifestDigest: d1, LayerDigest: d2, TOCDigest: d3}
}

// TestValidate guards every check of Validate on its own: each case breaks
// one field of a valid layer and must be refused as an invalid argument
// naming that field; the bound on the image ref is pinned at its edge.
func TestValidate(t *testing.T) {
	if err := valid().Validate(); err != nil {
		t.Fatalf("valid layer refused: %v", err)
	}
	optional := valid()
	optional.ManifestDigest = ""
	if err := optional.Validate(); err != nil {
		t.Fatalf("layer without manifest digest refused: %v", err)
	}
	next := valid()
	next.NextLayers = make([]digest.Digest, MaxNextLayers)
	for i := range next.NextLayers {
		next.NextLayers[i] = d3
	}
	if err := next.Validate(); err != nil {
		t.Fatalf("layer with %d next layers refused: %v", MaxNextLayers, err)
	}
	atLimit := valid()
	atLimit.ImageRef = strings.Repeat("a", MaxImageRefLength)
	if err := atLimit.Validate(); err != nil {
		t.Fatalf("image ref of %d bytes refused: %v", MaxImageRefLength, err)
	}
	for _, tc := range []struct {
		name  string
		edit  func(*Layer)
		field string
	}{
		{"no image ref", func(l *Layer) { l.ImageRef = "" }, "image ref"},
		{"image ref one byte too long", func(l *Layer) { l.ImageRef = strings.Repeat("a", MaxImageRefLength+1) }, "image ref"},
		{"image ref with a space", func(l *Layer) { l.ImageRef = "a b" }, "image ref"},
		{"image ref with a newline", func(l *Layer) { l.ImageRef = "a\nb" }, "image ref"},
		{"image ref with a NUL", func(l *Layer) { l.ImageRef = "a\x00b" }, "image ref"},
		{"no layer digest", func(l *Layer) { l.LayerDigest = "" }, "layer digest"},
		{"short layer digest", func(l *Layer) { l.LayerDigest = "sha256:12" }, "layer digest"},
		{"no toc digest", func(l *Layer) { l.TOCDigest = "" }, "toc digest"},
		{"toc digest without algorithm", func(l *Layer) { l.TOCDigest = "1111" }, "toc digest"},
		{"bad manifest digest", func(l *Layer) { l.ManifestDigest = "sha256:12" }, "manifest digest"},
		{"one next layer too many", func(l *Layer) { l.NextLayers = make([]digest.Digest, MaxNextLayers+1) }, "next layers"},
		{"bad next layer", func(l *Layer) { l.NextLayers = []digest.Digest{d1, "sha256:12"} }, "next layer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := valid()
			tc.edit(&l)
			err := l.Validate()
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("Validate = %v, want invalid argument", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
}
