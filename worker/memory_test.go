package worker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/containerd/log/logtest"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/chunks"
	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/internal/fusetest"
	"github.com/lazyfs/lazyfs/internal/testregistry"
	"github.com/lazyfs/lazyfs/remote"
	"github.com/lazyfs/lazyfs/toc"
	"github.com/lazyfs/lazyfs/worker"
)

// Sizes of TestWorkerMemoryBudget: three layers of 100 MiB each, read in
// full by one worker whose memory budget is a fraction of one layer.
const (
	bigLayerFile = 100 << 20
	memoryBudget = 32 << 20
	// memoryOverhead is what the worker may hold beyond its budget once
	// reads are done: the trees, layouts and readers of three layers and
	// the buffers of requests just finished (measured: about 2 MiB).
	memoryOverhead = 16 << 20
)

// bigLayer builds an eStargz layer with one file of n compressible bytes
// (so the test stays fast) whose 4 KiB blocks all differ (so every chunk
// has its own digest and nothing is shared across layers).
func bigLayer(t *testing.T, salt string, n int) (blob []byte, dgst, tocDigest digest.Digest) {
	t.Helper()
	data := make([]byte, n)
	for off := 0; off < n; off += 4096 {
		line := fmt.Appendf(nil, "%s block %09d\n", salt, off/4096)
		for i := off; i < min(off+4096, n); i += len(line) {
			copy(data[i:min(off+4096, n)], line)
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	testregistry.WriteTar(t, tw, &tar.Header{Name: "data.bin", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(n), ModTime: time.Unix(1700000000, 0)}, data)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	b, err := estargz.Build(io.NewSectionReader(bytes.NewReader(raw), 0, int64(len(raw))))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if blob, err = io.ReadAll(b); err != nil {
		t.Fatal(err)
	}
	return blob, digest.FromBytes(blob), b.TOCDigest()
}

// liveHeap returns the bytes of live heap objects after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestWorkerMemoryBudget is issue #11's "a worker serving three layers
// stays within its configured memory budget": one worker reads three
// 100 MiB layers in full through their FUSE mounts, and the memory it
// keeps (Go's live heap, measured after each layer) grows by at most its
// memory_cache_size plus a stated overhead — not once per layer, as when
// each layer had a cache of that size.
func TestWorkerMemoryBudget(t *testing.T) {
	reg := testregistry.New(t, testRepo)
	ctx := logtest.WithT(context.Background(), t)
	w, err := worker.New(ctx, worker.Options{
		ID:          "test",
		Version:     "test-version",
		Root:        t.TempDir(),
		Resolver:    remote.NewResolver(remote.Options{}),
		Limits:      toc.DefaultLimits(),
		Chunks:      chunks.Options{MemoryCacheSize: memoryBudget},
		FuseReaders: 2,
		AttachWait:  testTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)

	var dirs []string
	for i := range 3 {
		blob, dgst, tocDigest := bigLayer(t, fmt.Sprintf("layer-%d", i), bigLayerFile)
		reg.AddBlob(blob)
		m := mountFuse(t)
		id := fmt.Sprintf("m%d", i)
		load(t, w, daemonapi.LoadLayerRequest{
			MountID: id, ImageRef: reg.Ref("v1"), LayerDigest: dgst.String(), TOCDigest: tocDigest.String(), Mountpoint: m.dir,
		})
		attach(t, w, id, m)
		dirs = append(dirs, m.dir)
	}

	base := liveHeap()
	var peak uint64
	for i, dir := range dirs {
		within(t, "read a 100 MiB file", func() {
			// Plain system calls: os.Open on a mount this process
			// serves can wedge the runtime (see package fusetest).
			fd, err := fusetest.Open(filepath.Join(dir, "data.bin"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			n, err := io.Copy(io.Discard, fusetest.Reader(fd))
			if err != nil || n != bigLayerFile {
				t.Fatalf("layer %d: read %d bytes, %v; want %d", i, n, err, bigLayerFile)
			}
		})
		live := liveHeap()
		peak = max(peak, live)
		t.Logf("after reading layer %d: live heap %.1f MiB (%.1f MiB before any read)", i+1, float64(live)/(1<<20), float64(base)/(1<<20))
	}
	if grown := int64(peak) - int64(base); grown > memoryBudget+memoryOverhead {
		t.Errorf("the worker's live heap grew by %.1f MiB reading three layers, want at most its budget %d MiB + %d MiB overhead",
			float64(grown)/(1<<20), memoryBudget>>20, memoryOverhead>>20)
	}
}
