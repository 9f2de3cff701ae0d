package cache

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/log/logtest"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lazyfs/lazyfs/metrics"
)

// setAtime makes the chunk d look last used at t.
func setAtime(t *testing.T, dir string, d digest.Digest, at time.Time) {
	t.Helper()
	path, _ := chunkPath(dir, d)
	if err := os.Chtimes(path, at, time.Time{}); err != nil {
		t.Fatal(err)
	}
}

func exists(dir string, d digest.Digest) bool {
	path, _ := chunkPath(dir, d)
	_, err := os.Lstat(path)
	return err == nil
}

// TestEvictLeastRecentlyUsed: a pass removes the chunks used longest ago
// until the rest fits the budget, and a read marks a chunk used.
func TestEvictLeastRecentlyUsed(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	dir := t.TempDir()
	s := openStore(t, dir)
	base := time.Now().Add(-24 * time.Hour)
	var ds []digest.Digest
	for i := range 6 {
		ds = append(ds, put(t, s, chunkData(1000, byte(i))))
		setAtime(t, dir, ds[i], base.Add(time.Duration(i)*time.Minute)) // ds[0] oldest
	}
	// Reading the oldest makes it the most recently used.
	if _, ok := s.Get(ctx, ds[0], 1000); !ok {
		t.Fatal("Get: miss")
	}
	evictions := testutil.ToFloat64(metrics.CacheEvictions)

	res, err := NewEvictor(dir, 3500).Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Evicted != 3 || res.EvictedBytes != 3000 || res.Files != 3 || res.Bytes != 3000 {
		t.Errorf("pass = %+v, want 3 files (3000 bytes) evicted, 3 (3000 bytes) kept", res)
	}
	want := map[int]bool{0: true, 1: false, 2: false, 3: false, 4: true, 5: true}
	for i, d := range ds {
		if exists(dir, d) != want[i] {
			t.Errorf("chunk %d (used %d minutes after the first) kept = %v, want %v", i, i, !want[i], want[i])
		}
	}
	if n := testutil.ToFloat64(metrics.CacheEvictions) - evictions; n != 3 {
		t.Errorf("lazyfs_cache_evictions_total grew by %v, want 3", n)
	}
	if got := testutil.ToFloat64(metrics.CacheSize); got != 3000 {
		t.Errorf("lazyfs_cache_size_bytes = %v, want 3000", got)
	}

	// Within budget: nothing more goes.
	if res, err := NewEvictor(dir, 3000).Pass(ctx); err != nil || res.Evicted != 0 {
		t.Errorf("pass within budget = %+v, %v; want nothing evicted", res, err)
	}
}

// TestBudgetHoldsWhileFilling: whatever is written, each pass leaves the
// cache within its budget, with the newest chunks kept.
func TestBudgetHoldsWhileFilling(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	dir := t.TempDir()
	s := openStore(t, dir)
	ev := NewEvictor(dir, 10_000)
	base := time.Now().Add(-time.Hour)
	var last digest.Digest
	for i := range 40 {
		last = put(t, s, chunkData(900+i, byte(i)))
		setAtime(t, dir, last, base.Add(time.Duration(i)*time.Second))
		res, err := ev.Pass(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.Bytes > 10_000 {
			t.Fatalf("after chunk %d the cache holds %d bytes, budget 10000", i, res.Bytes)
		}
	}
	if !exists(dir, last) {
		t.Error("the newest chunk was evicted")
	}
}

// TestChunkBeingReadSurvivesEviction: a chunk evicted after a reader opened
// it is still read whole and verified; the next reader gets a miss.
func TestChunkBeingReadSurvivesEviction(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	dir := t.TempDir()
	s := openStore(t, dir)
	data := chunkData(64<<10, 5)
	d := put(t, s, data)

	evicted := false
	testHookOpened = func(path string) {
		res, err := NewEvictor(dir, 0).Pass(ctx)
		evicted = err == nil && res.Evicted == 1
	}
	got, ok := s.Get(ctx, d, int64(len(data)))
	testHookOpened = nil
	if !evicted {
		t.Fatal("the evictor did not remove the chunk while it was being read")
	}
	if !ok || !bytes.Equal(got, data) {
		t.Fatalf("read of a chunk evicted mid-read: ok=%v, equal=%v", ok, bytes.Equal(got, data))
	}
	if exists(dir, d) {
		t.Error("evicted chunk still has its name")
	}
	if _, ok := s.Get(ctx, d, int64(len(data))); ok {
		t.Error("Get after eviction: hit")
	}
}

// TestStaleTempsRemoved: a write that died mid-way leaves a temporary file,
// never a chunk; the evictor removes it once it is clearly abandoned.
func TestStaleTempsRemoved(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	dir := t.TempDir()
	openStore(t, dir)
	d := digest.FromBytes(chunkData(100, 1))
	stale := filepath.Join(dir, "tmp", d.Encoded()+".123")
	fresh := filepath.Join(dir, "tmp", d.Encoded()+".456")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTemp)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	res, err := NewEvictor(dir, 1<<30).Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.StaleTemps != 1 || res.Files != 0 {
		t.Errorf("pass = %+v, want 1 stale temp removed and no chunk counted", res)
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Error("stale temporary file kept")
	}
	if _, err := os.Lstat(fresh); err != nil {
		t.Error("a write in progress was removed")
	}
}

// testTime is hours from now.
func testTime(hours int) time.Time { return time.Now().Add(time.Duration(hours) * time.Hour) }
