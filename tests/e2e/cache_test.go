package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// TestCacheServesAfterRestartWithoutRegistry is issue #11's first promise:
// what a container read once is read again after the snapshotter and its
// worker restarted, with the registry stopped, from the on-disk chunk cache
// alone. The new worker starts with an empty memory cache and new FUSE
// connections (no page cache), so every byte comes from disk; its metrics
// show that it did not even try the registry.
func TestCacheServesAfterRestartWithoutRegistry(t *testing.T) {
	// Counts what the registry serves: no background proof (issue 14)
	// may fetch whole blobs meanwhile.
	s := startStackWith(t, harness.V2, harness.SnapshotterOptions{Env: env, Config: proofsOff})
	gate := startGate(t, s.reg.Addr())
	img := s.convertToEStargz(t, gate.Addr())
	s.pullLazily(t, img)
	ctx := context.Background()

	start := time.Now()
	s.runChecksOf(t, img.ref, "cache-cold") // reads every file of the image
	cold := time.Since(start)
	old := onlyWorker(t, s.snap)
	mounts := fuseMounts(t, s.snap)
	// Chunks reach the disk in the background: wait until the worker has
	// written what the container read.
	waitFor(t, 30*time.Second, "the worker's disk cache writes catch up", func() (bool, string) {
		page, err := workerAPI(s.snap, old.ID).Metrics(ctx)
		if err != nil {
			return false, err.Error()
		}
		queued, _ := metricValue(t, page, "lazyfs_cache_write_queue_bytes", nil)
		return queued == 0, fmt.Sprintf("%v bytes queued", queued)
	})

	// A clean stop: the container is gone, so the snapshotter unmounts the
	// layers and stops the worker, which writes what it still had queued.
	if code, inTime := s.snap.Stop(); !inTime || code != 0 {
		t.Fatalf("snapshotter stop: exit code %d, in time %v", code, inTime)
	}
	waitFor(t, 20*time.Second, fmt.Sprintf("worker %s (pid %d) exits", old.ID, old.PID), func() (bool, string) {
		return !running(old.PID), ""
	})
	files, bytes := cacheFiles(t, filepath.Join(s.snap.Root(), "cache"))
	t.Logf("cold read of every file took %v; the disk cache holds %d chunks (%s)", cold.Round(time.Millisecond), files, formatBytes(bytes))
	if files == 0 {
		t.Fatal("nothing was written to the disk cache")
	}

	if err := gate.Down(); err != nil {
		t.Fatal(err)
	}
	if err := s.snap.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitRemounted(t, s, img, old.PID, mounts)

	start = time.Now()
	s.runChecksOf(t, img.ref, "cache-warm")
	warm := time.Since(start)
	t.Logf("with the registry down, a new container read every file again in %v (cold: %v)", warm.Round(time.Millisecond), cold.Round(time.Millisecond))

	w := onlyWorker(t, s.snap)
	page, err := workerAPI(s.snap, w.ID).Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string) float64 {
		v, _ := metricValue(t, page, name, nil) // absent: never counted
		return v
	}
	hits, misses := value("lazyfs_cache_hits_total"), value("lazyfs_cache_misses_total")
	fetches, failures := value(chunkFetches), value("lazyfs_registry_request_failures_total")
	t.Logf("new worker %s: %v disk cache hits, %v misses, %v chunks fetched, %v failed registry requests", w.ID, hits, misses, fetches, failures)
	if hits == 0 || misses != 0 || fetches != 0 || failures != 0 {
		t.Errorf("new worker: %v hits, %v misses, %v chunk fetches, %v failed registry requests; want hits only: the registry must not be asked",
			hits, misses, fetches, failures)
	}

	// Usage of each remote snapshot is its layer's cached bytes: together
	// at least what the cache holds (a chunk two layers share counts for
	// both), each layer some. The snapshotter learns them on its eviction
	// passes, the first one at start-up.
	sn := s.cl.SnapshotService("lazyfs")
	waitFor(t, 30*time.Second, "Usage of the remote snapshots reports the cached bytes", func() (bool, string) {
		var sum int64
		var sizes []int64
		for _, chainID := range img.chainIDs {
			u, err := sn.Usage(ctx, chainID)
			if err != nil {
				t.Fatalf("Usage(%s): %v", chainID, err)
			}
			sizes = append(sizes, u.Size)
			sum += u.Size
			if u.Size == 0 {
				return false, fmt.Sprintf("usage by layer %v, cache %d bytes", sizes, bytes)
			}
		}
		return sum >= bytes, fmt.Sprintf("usage by layer %v, cache %d bytes", sizes, bytes)
	})
}

// cacheFiles counts the chunk files under a cache directory and their bytes.
func cacheFiles(t *testing.T, dir string) (n int, size int64) {
	t.Helper()
	err := filepath.WalkDir(filepath.Join(dir, "chunks"), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n++
			size += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, size
}
