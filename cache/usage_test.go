package cache

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/log/logtest"
	"github.com/opencontainers/go-digest"
)

// TestLayerUsage: the evictor reports, per layer a worker recorded, the
// bytes and chunks of it that are cached, and follows evictions.
func TestLayerUsage(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	dir := t.TempDir()
	s := openStore(t, dir)
	a, b, c := chunkData(1000, 1), chunkData(2000, 2), chunkData(4000, 3)
	ref := func(data []byte) ChunkRef { return ChunkRef{Digest: digest.FromBytes(data), Size: int64(len(data))} }
	layer1 := digest.FromString("layer 1")
	layer2 := digest.FromString("layer 2")
	// A file's chunk repeated (two files with equal contents) counts once.
	if err := s.PutLayer(ctx, layer1, []ChunkRef{ref(a), ref(b), ref(a), ref(c)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutLayer(ctx, layer2, []ChunkRef{ref(b)}); err != nil {
		t.Fatal(err)
	}
	put(t, s, a)
	put(t, s, b)

	ev := NewEvictor(dir, 1<<20)
	if _, _, ok := ev.CachedBytes(layer1); ok {
		t.Error("usage known before any pass")
	}
	if _, err := ev.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	check := func(layer digest.Digest, wantSize, wantChunks int64) {
		t.Helper()
		size, chunks, ok := ev.CachedBytes(layer)
		if !ok || size != wantSize || chunks != wantChunks {
			t.Errorf("CachedBytes(%s) = %d bytes, %d chunks, %v; want %d, %d, true", layer, size, chunks, ok, wantSize, wantChunks)
		}
	}
	check(layer1, 3000, 2) // a and b, not c
	check(layer2, 2000, 1) // b is shared: counted for both
	if _, _, ok := ev.CachedBytes(digest.FromString("never loaded")); ok {
		t.Error("usage of a layer no worker recorded")
	}

	// Budget for a and part of b: b (older) goes.
	setAtime(t, dir, digest.FromBytes(b), testTime(-2))
	setAtime(t, dir, digest.FromBytes(a), testTime(-1))
	ev.budget = 1500
	if _, err := ev.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	check(layer1, 1000, 1)
	check(layer2, 0, 0)

	// A damaged index is not trusted: the layer is unknown, others are not.
	path, _ := layerPath(dir, layer2)
	if err := os.WriteFile(path, []byte("sha256:nope 12\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := NewEvictor(dir, 1<<20)
	if _, err := fresh.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := fresh.CachedBytes(layer2); ok {
		t.Error("usage from a malformed index")
	}
	if _, _, ok := fresh.CachedBytes(layer1); !ok {
		t.Error("a malformed index hid another layer's usage")
	}
	if tmps, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmps) != 0 {
		t.Errorf("tmp/ holds %d files", len(tmps))
	}
}
