package supervisor

import (
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/layer"
)

// TestWorkerID: per image, one worker per manifest digest (layers of one
// image share it, another image gets its own), by image reference when no
// manifest digest came; in shared mode one worker for everything.
func TestWorkerID(t *testing.T) {
	m1, m2 := digest.FromString("manifest 1"), digest.FromString("manifest 2")
	a := layer.Layer{ImageRef: "reg/a:1", ManifestDigest: m1, LayerDigest: digest.FromString("l1")}
	a2 := layer.Layer{ImageRef: "reg/a:1", ManifestDigest: m1, LayerDigest: digest.FromString("l2")}
	b := layer.Layer{ImageRef: "reg/a:1", ManifestDigest: m2, LayerDigest: digest.FromString("l1")}
	refOnly := layer.Layer{ImageRef: "reg/c:1", LayerDigest: digest.FromString("l1")}
	refOnly2 := layer.Layer{ImageRef: "reg/c:2", LayerDigest: digest.FromString("l1")}

	per := &Supervisor{opts: Options{Mode: PerImage}}
	if got, want := per.workerID(a), "img-"+m1.Encoded()[:16]; got != want {
		t.Errorf("per-image id %q, want %q", got, want)
	}
	if per.workerID(a) != per.workerID(a2) {
		t.Error("two layers of one image got two workers")
	}
	if per.workerID(a) == per.workerID(b) {
		t.Error("two images (manifests) share a worker in per-image mode")
	}
	if got, want := per.workerID(refOnly), "ref-"+digestOf("reg/c:1")[:16]; got != want {
		t.Errorf("id without a manifest digest %q, want %q", got, want)
	}
	if per.workerID(refOnly) == per.workerID(refOnly2) {
		t.Error("two image references without manifest digests share a worker")
	}
	shared := &Supervisor{opts: Options{Mode: Shared}}
	for _, l := range []layer.Layer{a, b, refOnly} {
		if got := shared.workerID(l); got != "shared" {
			t.Errorf("shared mode id %q, want shared", got)
		}
	}
}
