package labels

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
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
