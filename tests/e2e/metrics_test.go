package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// chunkFetches is the worker-side counter the test follows.
const chunkFetches = "lazyfs_chunk_fetches_total"

// TestWorkerMetricsOnSnapshotter guards DESIGN.md's promise that the
// snapshotter's /metrics carries every worker's series labelled worker_id:
// a worker's chunk-fetch counter shows there with the worker's own value,
// and still does once that worker has exited.
func TestWorkerMetricsOnSnapshotter(t *testing.T) {
	// A short idle grace: the worker must exit within the wait below.
	s := startStackWith(t, harness.V2, harness.SnapshotterOptions{Env: env, Config: map[string]any{
		"workers": map[string]any{"idle_timeout": "1s"},
	}})
	img := s.convertToEStargz(t, "")
	s.pullLazily(t, img)
	s.runChecksOf(t, img.ref, "metrics-read") // reads every file: chunks are fetched
	w := onlyWorker(t, s.snap)
	snapURL := "http://" + s.snap.DebugAddr() + "/metrics"
	byWorker := map[string]string{"worker_id": w.ID}

	// Compared until equal: a prefetch started by the container's reads
	// may still be fetching when the container is gone.
	var own float64
	waitFor(t, 10*time.Second, "snapshotter shows the worker's own chunk-fetch count", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		page, err := workerAPI(s.snap, w.ID).Metrics(ctx)
		if err != nil {
			return false, err.Error()
		}
		var ok bool
		if own, ok = metricValue(t, page, chunkFetches, nil); !ok {
			return false, "the worker has no " + chunkFetches
		}
		got, ok := metricValue(t, httpGet(t, snapURL), chunkFetches, byWorker)
		return ok && got == own, fmt.Sprintf("worker %s: %v; snapshotter: %v (present %v)", w.ID, own, got, ok)
	})
	if own == 0 {
		t.Fatalf("worker %s fetched no chunk: the comparison proves nothing", w.ID)
	}
	t.Logf("worker %s fetched %v chunks; the snapshotter shows the same", w.ID, own)

	// Deleting the image lets containerd remove its snapshots; the
	// per-image worker exits once its last layer is unmounted and its idle
	// grace passed.
	ctx := context.Background()
	if err := s.cl.ImageService().Delete(ctx, img.ref, images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("worker %s (pid %d) exits after its image is deleted", w.ID, w.PID), func() (bool, string) {
		return !running(w.PID), fmt.Sprintf("mounts: %v", fuseMounts(t, s.snap))
	})
	got, ok := metricValue(t, httpGet(t, snapURL), chunkFetches, byWorker)
	if !ok || got != own {
		t.Errorf("after worker %s exited the snapshotter shows %s = %v (present %v), want %v", w.ID, chunkFetches, got, ok, own)
	}
}
