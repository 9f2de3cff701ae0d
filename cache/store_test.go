package cache

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/containerd/log/logtest"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lazyfs/lazyfs/metrics"
)

func chunkData(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(logtest.WithT(context.Background(), t), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t *testing.T, s *Store, data []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(data)
	s.Put(context.Background(), d, data)
	s.Flush()
	return d
}

func TestPutGet(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	dir := t.TempDir()
	s := openStore(t, dir)
	data := chunkData(5000, 1)
	hits, misses := testutil.ToFloat64(metrics.CacheHits), testutil.ToFloat64(metrics.CacheMisses)

	if _, ok := s.Get(ctx, digest.FromBytes(data), int64(len(data))); ok {
		t.Fatal("Get of a chunk never put: hit")
	}
	d := put(t, s, data)
	got, ok := s.Get(ctx, d, int64(len(data)))
	if !ok || !bytes.Equal(got, data) {
		t.Fatalf("Get after Put: ok=%v, %d bytes equal=%v", ok, len(got), bytes.Equal(got, data))
	}
	if h, m := testutil.ToFloat64(metrics.CacheHits)-hits, testutil.ToFloat64(metrics.CacheMisses)-misses; h != 1 || m != 1 {
		t.Errorf("hits %v misses %v, want 1 and 1", h, m)
	}

	// Content addressed: the file is named by the digest, mode 0600, and
	// nothing is left in tmp/.
	path := filepath.Join(dir, "chunks", "sha256", d.Encoded()[:2], d.Encoded())
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != int64(len(data)) {
		t.Errorf("%s: mode %v size %d, want 0600 and %d", path, fi.Mode().Perm(), fi.Size(), len(data))
	}
	if tmps, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmps) != 0 {
		t.Errorf("tmp/ holds %d files after the write", len(tmps))
	}

	// A second Store on the directory (another worker, or this one after
	// a restart) reads it.
	other := openStore(t, dir)
	if got, ok := other.Get(ctx, d, int64(len(data))); !ok || !bytes.Equal(got, data) {
		t.Errorf("Get through another Store: ok=%v", ok)
	}
	// A chunk list that lies about the size gets no bytes, and costs the
	// good file nothing: larger or smaller (a prefix of the chunk is not
	// the chunk either).
	corrupt := testutil.ToFloat64(metrics.CacheCorrupt)
	for _, size := range []int64{int64(len(data)) + 1, int64(len(data)) - 1} {
		if _, ok := other.Get(ctx, d, size); ok {
			t.Errorf("Get with size %d of a %d-byte chunk: hit", size, len(data))
		}
		if _, err := os.Stat(path); err != nil || testutil.ToFloat64(metrics.CacheCorrupt) != corrupt {
			t.Errorf("a good file after a Get with size %d: %v, counted corrupt %v", size, err, testutil.ToFloat64(metrics.CacheCorrupt) != corrupt)
		}
	}
	if got, ok := other.Get(ctx, d, int64(len(data))); !ok || !bytes.Equal(got, data) {
		t.Errorf("Get after Gets with other sizes: ok=%v", ok)
	}
}

// TestCorruptFileDeleted: a file that no longer holds what its name says
// is never served, is deleted and counted.
func TestCorruptFileDeleted(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(path string, data []byte) error
	}{
		{"flipped byte", func(path string, data []byte) error {
			bad := bytes.Clone(data)
			bad[len(bad)/2] ^= 0xff
			return os.WriteFile(path, bad, 0o600)
		}},
		{"truncated", func(path string, data []byte) error { return os.Truncate(path, int64(len(data)/2)) }},
		{"empty (torn by a crash)", func(path string, data []byte) error { return os.Truncate(path, 0) }},
		{"longer", func(path string, data []byte) error {
			return os.WriteFile(path, append(bytes.Clone(data), 'x'), 0o600)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := logtest.WithT(context.Background(), t)
			dir := t.TempDir()
			s := openStore(t, dir)
			data := chunkData(4096, 3)
			d := put(t, s, data)
			path, _ := chunkPath(dir, d)
			if err := tc.corrupt(path, data); err != nil {
				t.Fatal(err)
			}
			corrupt := testutil.ToFloat64(metrics.CacheCorrupt)
			if got, ok := s.Get(ctx, d, int64(len(data))); ok {
				t.Fatalf("corrupt file served (%d bytes)", len(got))
			}
			if n := testutil.ToFloat64(metrics.CacheCorrupt) - corrupt; n != 1 {
				t.Errorf("lazyfs_cache_corrupt_total grew by %v, want 1", n)
			}
			if _, err := os.Lstat(path); !os.IsNotExist(err) {
				t.Errorf("corrupt file still there: %v", err)
			}
			// Written again (as after a refetch), it is served.
			put(t, s, data)
			if got, ok := s.Get(ctx, d, int64(len(data))); !ok || !bytes.Equal(got, data) {
				t.Errorf("Get after rewrite: ok=%v", ok)
			}
		})
	}
}

// TestConcurrentReadersAndWriters: workers putting and getting the same
// chunks at once only ever see misses or the right bytes.
func TestConcurrentReadersAndWriters(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	dir := t.TempDir()
	stores := []*Store{openStore(t, dir), openStore(t, dir), openStore(t, dir)}
	var chunks [][]byte
	for i := range 16 {
		chunks = append(chunks, chunkData(1000+i*777, byte(i)))
	}
	corrupt := testutil.ToFloat64(metrics.CacheCorrupt)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 6 {
		s := stores[w%len(stores)]
		wg.Go(func() {
			for round := range 20 {
				for i, data := range chunks {
					d := digest.FromBytes(data)
					if (i+round+w)%2 == 0 {
						s.Put(ctx, d, data)
						continue
					}
					if got, ok := s.Get(ctx, d, int64(len(data))); ok && !bytes.Equal(got, data) {
						errs <- fmt.Errorf("chunk %d: wrong bytes served", i)
						return
					}
				}
			}
			s.Flush()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, data := range chunks {
		if _, ok := stores[0].Get(ctx, digest.FromBytes(data), int64(len(data))); !ok {
			t.Errorf("chunk %d missing after every write was flushed", i)
		}
	}
	if n := testutil.ToFloat64(metrics.CacheCorrupt) - corrupt; n != 0 {
		t.Errorf("%v files found corrupt: a reader saw a partial write", n)
	}
	if tmps, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmps) != 0 {
		t.Errorf("tmp/ holds %d files after every write", len(tmps))
	}
}

// TestPutBounded: Put never holds more than MaxQueued bytes; what does not
// fit is dropped and counted, and Close writes what was queued.
func TestPutBounded(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{MaxQueued: 1000})
	if err != nil {
		t.Fatal(err)
	}
	dropped := testutil.ToFloat64(metrics.CacheWriteFailures.WithLabelValues("dropped"))
	big := chunkData(1001, 9)
	s.Put(ctx, digest.FromBytes(big), big)
	if n := testutil.ToFloat64(metrics.CacheWriteFailures.WithLabelValues("dropped")) - dropped; n != 1 {
		t.Errorf("a chunk over MaxQueued: %v drops counted, want 1", n)
	}
	small := chunkData(10, 1)
	s.Put(ctx, digest.FromBytes(small), small)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	other := openStore(t, dir)
	if _, ok := other.Get(ctx, digest.FromBytes(small), int64(len(small))); !ok {
		t.Error("chunk queued before Close not written")
	}
	if _, ok := other.Get(ctx, digest.FromBytes(big), int64(len(big))); ok {
		t.Error("dropped chunk written")
	}
}

// TestCorruptFileReplacedMeanwhileKept guards discard's check that the
// file it deletes is the one it read: a worker that renamed a good copy
// over a corrupt file while a reader verified the corrupt one keeps its
// good copy.
func TestCorruptFileReplacedMeanwhileKept(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	dir := t.TempDir()
	s := openStore(t, dir)
	data := chunkData(4096, 5)
	d := put(t, s, data)
	path, _ := chunkPath(dir, d)
	bad := bytes.Clone(data)
	bad[0] ^= 0xff
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	testHookOpened = func(path string) {
		// Another worker's good copy lands under the name now.
		good := filepath.Join(dir, "tmp", "good")
		if err := os.WriteFile(good, data, 0o600); err != nil {
			t.Error(err)
		}
		if err := os.Rename(good, path); err != nil {
			t.Error(err)
		}
	}
	_, ok := s.Get(ctx, d, int64(len(data)))
	testHookOpened = nil
	if ok {
		t.Fatal("the corrupt file that was opened was served")
	}
	if got, ok := s.Get(ctx, d, int64(len(data))); !ok || !bytes.Equal(got, data) {
		t.Fatalf("the good copy renamed over the corrupt file while it was read is gone: ok=%v", ok)
	}
}
