package supervisor

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/layer"
)

// TestRecordedLayer guards how a recorded mount's layer is read: the typed
// layer of a version 3 record wins; a record of an older snapshotter is read
// through ParseLegacyLabels; a layer that cannot be read is left empty,
// which Mount then refuses.
func TestRecordedLayer(t *testing.T) {
	want := layer.Layer{ImageRef: "r/img:v1", LayerDigest: digest.FromString("blob"), TOCDigest: digest.FromString("toc")}
	legacy := map[string]string{"some.label": "x"}
	var parsed map[string]string
	s := &Supervisor{opts: Options{ParseLegacyLabels: func(l map[string]string) (layer.Layer, error) {
		parsed = l
		if l["some.label"] == "" {
			return layer.Layer{}, errors.New("unreadable")
		}
		return want, nil
	}}}
	ctx := context.Background()
	other := want
	other.ImageRef = "r/img:v2"
	if got := s.recordedLayer(ctx, "m", mountRecord{Layer: &other, Labels: legacy}); !reflect.DeepEqual(got, other) {
		t.Errorf("typed record: got %+v, want %+v", got, other)
	}
	if parsed != nil {
		t.Errorf("labels parsed although the record has a typed layer")
	}
	if got := s.recordedLayer(ctx, "m", mountRecord{Labels: legacy}); !reflect.DeepEqual(got, want) {
		t.Errorf("legacy record: got %+v, want %+v", got, want)
	}
	if got := s.recordedLayer(ctx, "m", mountRecord{Labels: map[string]string{}}); !reflect.DeepEqual(got, layer.Layer{}) {
		t.Errorf("unreadable legacy record: got %+v, want the zero layer", got)
	}
	s.opts.ParseLegacyLabels = nil
	if got := s.recordedLayer(ctx, "m", mountRecord{Labels: legacy}); !reflect.DeepEqual(got, layer.Layer{}) {
		t.Errorf("legacy record without a parser: got %+v, want the zero layer", got)
	}
	if err := (layer.Layer{}).Validate(); err == nil {
		t.Error("the zero layer validates; Mount would try to serve it")
	}
}
