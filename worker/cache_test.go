package worker_test

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/containerd/log/logtest"

	"github.com/lazyfs/lazyfs/cache"
	"github.com/lazyfs/lazyfs/chunks"
	"github.com/lazyfs/lazyfs/internal/testregistry"
	"github.com/lazyfs/lazyfs/remote"
	"github.com/lazyfs/lazyfs/toc"
	"github.com/lazyfs/lazyfs/worker"
)

// newCachingWorker is newWorker with the node's chunk cache under root.
func newCachingWorker(t *testing.T, root string) (*worker.Worker, *cache.Store) {
	t.Helper()
	ctx := logtest.WithT(context.Background(), t)
	disk, err := cache.Open(ctx, filepath.Join(root, "cache"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(ctx, worker.Options{
		ID:          "test",
		Version:     "test-version",
		Root:        root,
		Resolver:    remote.NewResolver(remote.Options{}),
		Limits:      toc.DefaultLimits(),
		Chunks:      chunks.Options{Disk: disk},
		Cache:       disk,
		FuseReaders: 2,
		AttachWait:  testTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Close()
		disk.Close()
	})
	return w, disk
}

// TestWorkerServesFromDiskCache: what one worker read is served by its
// successor (empty memory) from the disk cache with the registry down, and
// the layer's cached bytes are known to the evictor.
func TestWorkerServesFromDiskCache(t *testing.T) {
	e := newEnv(t)
	first, disk := newCachingWorker(t, e.root)
	m1 := mountFuse(t)
	load(t, first, e.request("m1", m1.dir))
	attach(t, first, "m1", m1)
	testregistry.CheckFiles(t, testTimeout, m1.dir, e.layer)
	disk.Flush()

	ev := cache.NewEvictor(filepath.Join(e.root, "cache"), 1<<30)
	if _, err := ev.Pass(logtest.WithT(context.Background(), t)); err != nil {
		t.Fatal(err)
	}
	if size, chunks, ok := ev.CachedBytes(e.layer.Digest); !ok || size == 0 {
		t.Errorf("cached bytes of the layer: %d in %d chunks (known %v), want some", size, chunks, ok)
	}

	checkServedWithRegistryDown(t, e)
}

// TestProofFillsTheChunkCache: issue 14's proof reads the whole blob once
// and stores every chunk in the chunk cache on the way, so that another
// worker serves the whole layer with the registry down.
func TestProofFillsTheChunkCache(t *testing.T) {
	e := newEnv(t)
	first, disk := newCachingWorker(t, e.root)
	load(t, first, e.request("m1", ""))
	ctx, cancel := testContext(t)
	defer cancel()
	if _, err := first.Verify(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	disk.Flush()

	checkServedWithRegistryDown(t, e)
}

// TestProofCachesOnlyVerifiedChunks guards the chunk digest check of the
// proof's caching: a registry that serves other bytes under the layer's
// digest (here another layer, so every chunk decodes cleanly to other
// bytes) gets nothing into the cache.
func TestProofCachesOnlyVerifiedChunks(t *testing.T) {
	e := newEnv(t)
	w, disk := newCachingWorker(t, e.root)
	load(t, w, e.request("m1", ""))
	e.reg.ServeAs(e.layer.Digest, testregistry.BuildLayer(t, "other").Blob)
	ctx, cancel := testContext(t)
	defer cancel()
	if _, err := w.Verify(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	disk.Flush()
	var files []string
	err := filepath.WalkDir(filepath.Join(e.root, "cache", "chunks"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, path)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 0 {
		t.Errorf("a proof of other bytes cached %d chunks: %v", len(files), files)
	}
}

// checkServedWithRegistryDown stops e's registry and checks that a second
// worker on the same root serves every file of the layer from the chunk
// cache.
func checkServedWithRegistryDown(t *testing.T, e *env) {
	t.Helper()
	e.reg.Stop()
	second, _ := newCachingWorker(t, e.root)
	m2 := mountFuse(t)
	load(t, second, e.request("m2", m2.dir))
	attach(t, second, "m2", m2)
	testregistry.CheckFiles(t, testTimeout, m2.dir, e.layer)
}
