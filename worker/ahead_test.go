package worker_test

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/internal/testregistry"
	"github.com/lazyfs/lazyfs/metrics"
	"github.com/lazyfs/lazyfs/toc"
)

// TestNextLayersResolvedAhead: the first load of an image resolves the
// layers its request lists next, and their own loads use what was fetched:
// one ranged GET per layer in all, none of them by the second load.
func TestNextLayersResolvedAhead(t *testing.T) {
	e := newEnv(t)
	two := testregistry.BuildLayer(t, "two")
	e.reg.AddBlob(two.Blob)
	w := newWorker(t, e.root, false)
	used := testutil.ToFloat64(metrics.LayersResolvedAhead.WithLabelValues("used"))

	first := e.request("m1", "")
	first.NextLayers = []string{e.layer.Digest.String(), two.Digest.String()} // its own digest is skipped
	load(t, w, first)
	second := daemonapi.LoadLayerRequest{MountID: "m2", ImageRef: e.reg.Ref("v1"), LayerDigest: two.Digest.String(),
		TOCDigest: two.TOCDigest.String(), Mountpoint: "/mnt/m2"}
	info := load(t, w, second)
	if info.Entries != tocEntries(t, two) || info.BlobSize != int64(len(two.Blob)) {
		t.Errorf("second layer: %+v, want %d entries and %d bytes", info, tocEntries(t, two), len(two.Blob))
	}
	if got := testutil.ToFloat64(metrics.LayersResolvedAhead.WithLabelValues("used")) - used; got != 1 {
		t.Errorf("layers resolved ahead and used: %v, want 1", got)
	}
	if gets := e.reg.RangedGets(); gets != 2 {
		t.Errorf("%d ranged GETs for two layers, want 2 (one tail each)", gets)
	}
}

// TestResolvedAheadIsVerified: bytes fetched ahead are verified by the
// layer's own load like the registry's: another blob served under the
// layer's digest is refused by its TOC digest.
func TestResolvedAheadIsVerified(t *testing.T) {
	e := newEnv(t)
	two, other := testregistry.BuildLayer(t, "two"), testregistry.BuildLayer(t, "other")
	e.reg.ServeAs(two.Digest, other.Blob)
	w := newWorker(t, e.root, false)
	used := testutil.ToFloat64(metrics.LayersResolvedAhead.WithLabelValues("used"))

	first := e.request("m1", "")
	first.NextLayers = []string{two.Digest.String()}
	load(t, w, first)
	ctx, cancel := testContext(t)
	defer cancel()
	_, err := w.LoadLayer(ctx, daemonapi.LoadLayerRequest{MountID: "m2", ImageRef: e.reg.Ref("v1"), LayerDigest: two.Digest.String(),
		TOCDigest: two.TOCDigest.String(), Mountpoint: "/mnt/m2"})
	var refused *toc.RefusedError
	if !errors.As(err, &refused) || !errdefs.IsInvalidArgument(err) {
		t.Fatalf("load of a layer whose blob was swapped: %v, want a refused layer", err)
	}
	if got := testutil.ToFloat64(metrics.LayersResolvedAhead.WithLabelValues("used")) - used; got != 1 {
		t.Errorf("layers resolved ahead and used: %v, want 1 (the refusal judged the bytes fetched ahead)", got)
	}
}
