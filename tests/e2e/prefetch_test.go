package e2e

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lazyfs/lazyfs/convert"
	"github.com/lazyfs/lazyfs/tests/harness"
)

// TestPrefetchAtMount is issue #11's prefetch (point 3) and its metrics
// (point 7) end to end. The test image is converted with the 8 MiB random
// file prioritized, so its layer has the eStargz prefetch landmark after
// it, and the other layers the no-prefetch landmark. Right after a lazy
// pull, with no container running, the worker fetches that file by
// itself: the snapshotter's /metrics shows the layer's prefetch progress
// (labelled with the worker id) reach its size, and the other layers have
// no prefetch. A container then reads the file without a single chunk
// fetched from the registry, and the scheduler's series (foreground wait,
// queues) and the memory tier's are there.
func TestPrefetchAtMount(t *testing.T) {
	// No background proof (issue 14) may fetch the layer meanwhile: it
	// stands aside while the container reads, and would fetch the rest of
	// the layer during the read this test counts.
	s := startStackWith(t, harness.V2, harness.SnapshotterOptions{Env: env, Config: proofsOff})
	proxy := startProxy(t, s)
	img := s.convertImageWith(t, s.ref, estargzRepo, "prefetch", proxy.Addr(), convert.Options{
		PrioritizedFiles: []string{harness.TestImageRandomFile},
	})
	s.pullLazily(t, img)
	w := onlyWorker(t, s.snap)
	snapURL := "http://" + s.snap.DebugAddr() + "/metrics"

	var prefetched string
	waitFor(t, time.Minute, "the prioritized file's layer is prefetched", func() (bool, string) {
		page := httpGet(t, snapURL)
		var state []string
		prefetched = ""
		for _, l := range img.layers {
			lbls := map[string]string{"worker_id": w.ID, "layer_digest": l.Digest.String()}
			total, ok := metricValue(t, page, "lazyfs_prefetch_bytes", lbls)
			if !ok {
				continue
			}
			done, _ := metricValue(t, page, "lazyfs_prefetch_done_bytes", lbls)
			state = append(state, fmt.Sprintf("%s: %v of %v", l.Digest, done, total))
			if total > 0 && done == total {
				if prefetched != "" {
					t.Fatalf("two layers prefetched (%s and %s); only one has prioritized files", prefetched, l.Digest)
				}
				prefetched = l.Digest.String()
			}
		}
		return prefetched != "" && len(state) == 1, fmt.Sprintf("prefetch progress %v", state)
	})
	page := httpGet(t, snapURL)
	total, _ := metricValue(t, page, "lazyfs_prefetch_bytes", map[string]string{"worker_id": w.ID, "layer_digest": prefetched})
	if total < 8<<20 {
		t.Errorf("layer %s prefetched %v bytes, want at least the 8 MiB prioritized file", prefetched, total)
	}
	if n := histogramCount(t, page, "lazyfs_fetch_wait_seconds", map[string]string{"worker_id": w.ID, "class": "prefetch"}); n == 0 {
		t.Error("no prefetch request went through the scheduler")
	}
	var layer digest.Digest
	for _, l := range img.layers {
		if l.Digest.String() == prefetched {
			layer = l.Digest
		}
	}
	served := proxy.BlobBytes(layer)

	out, err := s.ctrd.CtrRun(context.Background(), "--snapshotter", "lazyfs", "--rm", img.ref, "prefetch-read", "sh", "-c",
		"grep -F '  "+harness.TestImageRandomFile+"' "+harness.TestImageChecksumsPath+" | sha256sum -c -")
	if err != nil {
		t.Fatalf("reading the prefetched file: %v\n%s", err, out)
	}
	// The container reads nothing else of that layer (its busybox and the
	// checksum list are in the others).
	if again := proxy.BlobBytes(layer) - served; again != 0 {
		t.Errorf("reading the prefetched file took %d more bytes of its layer from the registry, want 0", again)
	}
	t.Logf("layer %s: %s served by the registry before any container ran, none after", layer, formatBytes(served))
	page = httpGet(t, snapURL)
	for _, name := range []string{"lazyfs_memory_cache_bytes", "lazyfs_fetch_queue_length", "lazyfs_fetches_in_flight", "lazyfs_unavailable_reads_total"} {
		if _, ok := metricValue(t, page, name, map[string]string{"worker_id": w.ID}); !ok {
			t.Errorf("the snapshotter's /metrics has no %s for worker %s", name, w.ID)
		}
	}
	if n := histogramCount(t, page, "lazyfs_fetch_wait_seconds", map[string]string{"worker_id": w.ID, "class": "foreground"}); n == 0 {
		t.Error("no foreground wait observed: the container's reads did not go through the scheduler")
	}
}

// histogramCount returns the sample count of the histogram name{lbls} in a
// Prometheus text page (0 when absent).
func histogramCount(t *testing.T, page []byte, name string, lbls map[string]string) uint64 {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(page))
	if err != nil {
		t.Fatalf("metrics page does not parse: %v", err)
	}
	fam, ok := families[name]
	if !ok {
		return 0
	}
	for _, m := range fam.GetMetric() {
		match := true
		for k, v := range lbls {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || (lp.GetName() == k && lp.GetValue() == v)
			}
			match = match && found
		}
		if match && m.Histogram != nil {
			return m.Histogram.GetSampleCount()
		}
	}
	return 0
}
