package labels

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/layer"
)

func TestParseLayer(t *testing.T) {
	const (
		d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
		d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
		d3 = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	)
	full := func() map[string]string {
		return map[string]string{
			TargetSnapshotRef: "sha256:chain",
			ImageRef:          "127.0.0.1:5000/img:v1",
			ManifestDigest:    d1,
			LayerDigest:       d2,
			TOCDigest:         d3,
		}
	}
	tests := []struct {
		name    string
		edit    func(map[string]string)
		wantErr error
	}{
		{"complete", func(map[string]string) {}, nil},
		{"no manifest digest is fine", func(l map[string]string) { delete(l, ManifestDigest) }, nil},
		{"not estargz", func(l map[string]string) { delete(l, TOCDigest) }, ErrNotRemote},
		{"no target ref is fine (a forged snapshot's labels)", func(l map[string]string) { delete(l, TargetSnapshotRef) }, nil},
		{"no image ref", func(l map[string]string) { delete(l, ImageRef) }, ErrNotRemote},
		{"bad toc digest", func(l map[string]string) { l[TOCDigest] = "sha256:zz" }, errdefs.ErrInvalidArgument},
		{"bad layer digest", func(l map[string]string) { l[LayerDigest] = "nope" }, errdefs.ErrInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := full()
			tc.edit(l)
			layer, err := ParseLayer(l)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if layer.LayerDigest.String() != d2 || layer.TOCDigest.String() != d3 || layer.ImageRef != l[ImageRef] {
					t.Fatalf("parsed %+v", layer)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// TestParseNextLayers: the image-layers label becomes the layers after this
// one, without this one; a malformed digest ends the hint there (it is a
// hint: the layer itself stays lazy), and the hint is bounded.
func TestParseNextLayers(t *testing.T) {
	d := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	base := map[string]string{ImageRef: "127.0.0.1:5000/img:v1", LayerDigest: d("2"), TOCDigest: d("3")}
	many := make([]string, layer.MaxNextLayers+2)
	for i := range many {
		many[i] = d("5")
	}
	for _, tc := range []struct {
		name, label string
		want        int
	}{
		{"none", "", 0},
		{"own digest skipped", d("2") + "," + d("4") + "," + d("5"), 2},
		{"malformed ends the hint", d("2") + "," + d("4") + ",sha256:12," + d("5"), 1},
		{"bounded", strings.Join(many, ","), layer.MaxNextLayers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := maps.Clone(base)
			l[ImageLayers] = tc.label
			lay, err := ParseLayer(l)
			if err != nil {
				t.Fatal(err)
			}
			if len(lay.NextLayers) != tc.want || slices.Contains(lay.NextLayers, digest.Digest(d("2"))) {
				t.Errorf("next layers %v, want %d without the layer's own", lay.NextLayers, tc.want)
			}
		})
	}
}
