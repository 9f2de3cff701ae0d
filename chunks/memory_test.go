package chunks

import (
	"context"
	"testing"

	"github.com/containerd/log/logtest"
	"github.com/containerd/stargz-snapshotter/estargz"
)

// TestMemoryOneBudgetForAllLayers guards the worker-wide memory tier: three
// layers read in full through Readers sharing one Memory never make it hold
// more than its budget (the budget is the worker's, not each layer's), and
// a chunk two layers share is kept once: reading it through the second
// layer asks that layer's source nothing.
func TestMemoryOneBudgetForAllLayers(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	const budget = 50_000
	mem := NewMemory(budget)
	if mem.Budget() != budget {
		t.Fatalf("Budget() = %d, want %d", mem.Budget(), budget)
	}
	for i := range 3 {
		l := buildLayer(t, []testFile{{"f", fileData(200_000, uint64(20+i))}}, estargz.WithChunkSize(10_000))
		r := NewReader(&memSource{blob: l.blob}, Options{Memory: mem, MemoryCacheSize: 1 << 30, LayerDigest: testLayerDigest})
		p := make([]byte, 10_000)
		for off := int64(0); off < 200_000; off += int64(len(p)) {
			if _, err := r.ReadAt(ctx, l.files["f"], p, off); err != nil {
				t.Fatalf("layer %d at %d: %v", i, off, err)
			}
			if got := mem.Size(); got > budget {
				t.Fatalf("layer %d: the shared memory tier holds %d bytes, budget %d", i, got, budget)
			}
		}
	}

	shared := fileData(30_000, 99)
	a := buildLayer(t, []testFile{{"a", shared}}, estargz.WithChunkSize(10_000))
	b := buildLayer(t, []testFile{{"pad", fileData(5_000, 1)}, {"b", shared}}, estargz.WithChunkSize(10_000))
	srcA, srcB := &memSource{blob: a.blob}, &memSource{blob: b.blob}
	ra := NewReader(srcA, Options{Memory: mem, LayerDigest: testLayerDigest})
	rb := NewReader(srcB, Options{Memory: mem, LayerDigest: testLayerDigest})
	if _, err := ra.ReadAt(ctx, a.files["a"], make([]byte, 10_000), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := rb.ReadAt(ctx, b.files["b"], make([]byte, 10_000), 0); err != nil {
		t.Fatal(err)
	}
	if n := len(srcB.spans()); n != 0 {
		t.Errorf("layer b's source was asked %d times for a chunk layer a's read had cached, want 0", n)
	}
}
