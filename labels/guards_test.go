package labels

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

// TestParseLayerEveryLabel guards each label check of ParseLayer on its
// own: a missing layer digest is no lazy layer, a malformed manifest digest
// is refused, and a well-formed one is kept.
func TestParseLayerEveryLabel(t *testing.T) {
	const (
		d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
		d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	)
	full := func() map[string]string {
		return map[string]string{
			TargetSnapshotRef: "sha256:chain",
			ImageRef:          "127.0.0.1:5000/img:v1",
			ManifestDigest:    d1,
			LayerDigest:       d2,
			TOCDigest:         d2,
		}
	}
	l := full()
	layer, err := ParseLayer(l)
	if err != nil || layer.ManifestDigest != d1 {
		t.Fatalf("ParseLayer = %+v, %v; want manifest digest %s", layer, err, d1)
	}
	for _, tc := range []struct {
		name    string
		key     string
		value   string
		wantErr error
	}{
		{"no layer digest", LayerDigest, "", ErrNotRemote},
		{"empty TOC digest", TOCDigest, "", ErrNotRemote},
		{"bad manifest digest", ManifestDigest, "sha256:12", errdefs.ErrInvalidArgument},
		{"manifest digest without algorithm", ManifestDigest, "1111", errdefs.ErrInvalidArgument},
	} {
		l := full()
		l[tc.key] = tc.value
		if _, err := ParseLayer(l); !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.wantErr)
		}
	}
	if !errdefs.IsNotImplemented(ErrNotRemote) {
		t.Error("ErrNotRemote is not of class not implemented")
	}
}
