package cache

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/log/logtest"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"
	logrustest "github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/internal/testreq"
	"github.com/lazyfs/lazyfs/metrics"
)

// The tests in this file guard the names the cache makes from digests
// (a chunk or layer digest becomes a path) and what a layer index may
// hold. The digests come from a TOC, which a hostile image controls.

// TestDigestNeverLeavesTheCache guards chunkPath's validation: a "digest"
// whose encoded part climbs out of the cache directory reads nothing and,
// above all, deletes nothing there (a file that does not match its name
// would be deleted as corrupt).
func TestDigestNeverLeavesTheCache(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	base := t.TempDir()
	s := openStore(t, filepath.Join(base, "cache"))
	victim := filepath.Join(base, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	// <cache>/chunks/sha256/../../victim is <base>/victim.
	const d = digest.Digest("sha256:../../victim")
	if _, ok := s.Get(ctx, d, int64(len("precious"))); ok {
		t.Errorf("Get(%q): hit", d)
	}
	s.Put(ctx, d, []byte("overwritten"))
	s.Flush()
	if got, err := os.ReadFile(victim); err != nil || string(got) != "precious" {
		t.Fatalf("the file a malformed digest names outside the cache: %q, %v", got, err)
	}
	if _, err := chunkPath(s.Dir(), "sha256:../../victim"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("chunkPath of a malformed digest: %v, want invalid argument", err)
	}
}

// TestPutLayerRefusesBadNames guards layerPath's validation and what an
// index keeps: a layer digest that is no digest is refused (it would name
// the index file), and refs with a malformed digest or a negative size
// are left out of the index.
func TestPutLayerRefusesBadNames(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	dir := t.TempDir()
	s := openStore(t, dir)
	for _, layer := range []digest.Digest{"sha256:zz", "sha256:../../x", ""} {
		if err := s.PutLayer(ctx, layer, nil); !errdefs.IsInvalidArgument(err) {
			t.Errorf("PutLayer(%q) = %v, want invalid argument", layer, err)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, layersDir)); len(entries) != 0 {
		t.Errorf("%d entries under %s after refused layers", len(entries), layersDir)
	}

	good := ChunkRef{Digest: digest.FromString("good"), Size: 4}
	layer := digest.FromString("layer")
	refs := []ChunkRef{
		{Digest: "sha256:nope", Size: 1},
		{Digest: digest.FromString("negative"), Size: -1},
		good,
		{Digest: digest.FromString("empty"), Size: 0},
	}
	if err := s.PutLayer(ctx, layer, refs); err != nil {
		t.Fatal(err)
	}
	path, _ := layerPath(dir, layer)
	got, err := readLayer(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[digest.Digest]int64{good.Digest: 4, digest.FromString("empty"): 0}
	if len(got) != len(want) {
		t.Fatalf("index holds %v, want only the well-formed refs %v", got, want)
	}
	for _, r := range got {
		if size, ok := want[r.Digest]; !ok || size != r.Size {
			t.Errorf("index holds %v, want only the well-formed refs %v", got, want)
		}
	}
}

// TestReadLayerRefusesNegativeSizes guards readLayer: an index line with
// a negative size, no size, a size that is no number or a malformed
// digest is not one PutLayer wrote, and the index is refused.
func TestReadLayerRefusesNegativeSizes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index")
	d := digest.FromString("x")
	for line, ok := range map[string]bool{
		d.String() + " 0\n":   true,
		d.String() + " 12\n":  true,
		d.String() + " -1\n":  false,
		d.String() + "\n":     false,
		d.String() + " x\n":   false,
		d.String() + " 1 2\n": false,
		"sha256:nope 12\n":    false,
	} {
		if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := readLayer(path)
		if ok && err != nil || !ok && !errdefs.IsDataLoss(err) {
			t.Errorf("readLayer(%q) = %v, want ok %v (else data loss)", line, err, ok)
		}
	}
}

// TestCachedChunkNotRewritten guards stage's check for a chunk already
// cached: a chunk put again (another worker fetched it too) keeps its
// file, which readers and the evictor may hold.
func TestCachedChunkNotRewritten(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	data := chunkData(1000, 7)
	d := put(t, s, data)
	path, _ := chunkPath(dir, d)
	var before, after unix.Stat_t
	if err := unix.Stat(path, &before); err != nil {
		t.Fatal(err)
	}
	put(t, s, data)
	if err := unix.Stat(path, &after); err != nil {
		t.Fatal(err)
	}
	if after.Ino != before.Ino {
		t.Errorf("a chunk put again was written again (inode %d, was %d)", after.Ino, before.Ino)
	}
}

// TestCacheDirsArePrivate guards Open's modes: chunks are image contents,
// which may be private, so the cache's directories are 0700.
func TestCacheDirsArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	openStore(t, dir)
	for _, d := range []string{dir, filepath.Join(dir, chunksDir), filepath.Join(dir, tmpDir)} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want 0700", d, fi.Mode().Perm())
		}
	}
}

// TestReadTouchesOncePerMinute guards touch on a file system mounted
// noatime, where nothing else records a read (relatime, the default,
// records the first read after a change and then one a day): a read marks
// a chunk used unless it was marked within the last minute, so that a
// chunk read in a loop costs no write per read.
func TestReadTouchesOncePerMinute(t *testing.T) {
	testreq.RequireRoot(t)
	ctx := logtest.WithT(context.Background(), t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOATIME, "size=4m"); err != nil {
		t.Fatalf("mount a noatime tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	s := openStore(t, dir)
	d := put(t, s, chunkData(1000, 9))
	path, _ := chunkPath(dir, d)
	for _, tc := range []struct {
		age     time.Duration
		touched bool
	}{{10 * time.Second, false}, {50 * time.Second, false}, {2 * time.Minute, true}, {time.Hour, true}} {
		at := time.Now().Add(-tc.age).Truncate(time.Second)
		if err := os.Chtimes(path, at, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Get(ctx, d, 1000); !ok {
			t.Fatal("Get: miss")
		}
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		if got := time.Unix(st.Atim.Unix()); got.Equal(at) == tc.touched {
			t.Errorf("read of a chunk last used %v ago: atime %v (was %v); touched %v, want %v", tc.age, got, at, !got.Equal(at), tc.touched)
		}
	}
}

// TestLayerUsageCountsMatchingSizesOnly guards usage's size comparison: a
// cached chunk counts for a layer only at the size the layer's index
// gives it (a hostile TOC may give a shared digest another size).
func TestLayerUsageCountsMatchingSizesOnly(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	dir := t.TempDir()
	s := openStore(t, dir)
	data := chunkData(1000, 11)
	d := put(t, s, data)
	honest, liar := digest.FromString("honest"), digest.FromString("liar")
	if err := s.PutLayer(ctx, honest, []ChunkRef{{Digest: d, Size: 1000}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutLayer(ctx, liar, []ChunkRef{{Digest: d, Size: 999}}); err != nil {
		t.Fatal(err)
	}
	ev := NewEvictor(dir, 1<<20)
	if _, err := ev.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	for layer, want := range map[digest.Digest][2]int64{honest: {1000, 1}, liar: {0, 0}} {
		size, chunks, ok := ev.CachedBytes(layer)
		if !ok || size != want[0] || chunks != want[1] {
			t.Errorf("layer %s: %d bytes in %d chunks (%v), want %d in %d", layer, size, chunks, ok, want[0], want[1])
		}
	}
}

// TestEvictionStopsAtTheBudget pins the budget at its edge: a pass
// evicts until the cache holds at most the budget, and a cache that then
// holds exactly the budget loses nothing more.
func TestEvictionStopsAtTheBudget(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	dir := t.TempDir()
	s := openStore(t, dir)
	for i := range 4 {
		put(t, s, chunkData(1000, byte(20+i)))
	}
	res, err := NewEvictor(dir, 2000).Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Evicted != 2 || res.Bytes != 2000 {
		t.Errorf("pass with a budget of 2000 over 4000 bytes = %+v, want 2 evicted and 2000 bytes kept", res)
	}
}

// TestWriteAccounting guards what the writer reports: a chunk of exactly
// MaxQueued bytes is queued (the bound is inclusive), and a chunk written
// counts as written, never as a failure.
func TestWriteAccounting(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{MaxQueued: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	writes, failures, dropped := testutil.ToFloat64(metrics.CacheWrites),
		testutil.ToFloat64(metrics.CacheWriteFailures.WithLabelValues("error")),
		testutil.ToFloat64(metrics.CacheWriteFailures.WithLabelValues("dropped"))
	data := chunkData(1000, 31)
	s.Put(ctx, digest.FromBytes(data), data)
	s.Flush()
	if _, ok := s.Get(ctx, digest.FromBytes(data), 1000); !ok {
		t.Error("a chunk of exactly MaxQueued bytes was not written")
	}
	if w, f, d := testutil.ToFloat64(metrics.CacheWrites)-writes,
		testutil.ToFloat64(metrics.CacheWriteFailures.WithLabelValues("error"))-failures,
		testutil.ToFloat64(metrics.CacheWriteFailures.WithLabelValues("dropped"))-dropped; w != 1 || f != 0 || d != 0 {
		t.Errorf("writes %v, failures %v, drops %v; want 1, 0, 0", w, f, d)
	}
}

// TestMalformedIndexNamesItsLine guards readLayer's line count: the error
// names the line that is wrong.
func TestMalformedIndexNamesItsLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index")
	d := digest.FromString("x")
	if err := os.WriteFile(path, []byte(d.String()+" 1\n"+d.String()+" 2\nbroken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readLayer(path); err == nil || !strings.Contains(err.Error(), path+":3:") {
		t.Errorf("readLayer = %v, want an error naming %s:3", err, path)
	}
}

// TestFailedWriteLeavesNoFile guards the write error checks of the staged
// chunk writer and of writeFile: on a full file system a chunk or a layer
// index that could not be written whole never appears under its name (a
// torn index would be read as the layer's; a torn chunk would cost a
// verification), the failure is counted or returned, and no temporary
// file is left behind.
func TestFailedWriteLeavesNoFile(t *testing.T) {
	testreq.RequireRoot(t)
	ctx := logtest.WithT(context.Background(), t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	s := openStore(t, dir)

	failures := testutil.ToFloat64(metrics.CacheWriteFailures.WithLabelValues("error"))
	big := chunkData(256<<10, 41)
	d := put(t, s, big)
	if n := testutil.ToFloat64(metrics.CacheWriteFailures.WithLabelValues("error")) - failures; n != 1 {
		t.Errorf("a chunk larger than the file system: %v write failures counted, want 1", n)
	}
	path, _ := chunkPath(dir, d)
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("a chunk that could not be written is under its name: %v", err)
	}

	refs := make([]ChunkRef, 4000) // about 300 KiB of index
	for i := range refs {
		refs[i] = ChunkRef{Digest: digest.FromString(fmt.Sprint(i)), Size: int64(i)}
	}
	layer := digest.FromString("layer")
	if err := s.PutLayer(ctx, layer, refs); err == nil {
		t.Error("PutLayer on a full file system succeeded")
	}
	index, _ := layerPath(dir, layer)
	if _, err := os.Lstat(index); !os.IsNotExist(err) {
		t.Errorf("a layer index that could not be written is under its name: %v", err)
	}
	if tmps, _ := os.ReadDir(filepath.Join(dir, tmpDir)); len(tmps) != 0 {
		t.Errorf("%d temporary files left after failed writes", len(tmps))
	}
}

// TestMissLoggedOnlyWhenWrong guards Get's log line: a chunk that is
// simply not cached is a miss like any other and logs nothing (a cold
// cache would flood the log), while a lookup that fails for another reason
// is logged for the operator.
func TestMissLoggedOnlyWhenWrong(t *testing.T) {
	logger, hook := logrustest.NewNullLogger()
	ctx := log.WithLogger(context.Background(), logrus.NewEntry(logger))
	s := openStore(t, t.TempDir())
	if _, ok := s.Get(ctx, digest.FromString("never cached"), 10); ok {
		t.Fatal("Get of a chunk never cached: hit")
	}
	if n := len(hook.AllEntries()); n != 0 {
		t.Errorf("a plain miss logged %d lines, want none: %v", n, hook.LastEntry().Message)
	}
	if _, ok := s.Get(ctx, "sha256:nope", 10); ok {
		t.Fatal("Get of a malformed digest: hit")
	}
	if e := hook.LastEntry(); e == nil || e.Level != logrus.WarnLevel || e.Data["chunk_digest"] != digest.Digest("sha256:nope") {
		t.Errorf("a lookup that failed for another reason than a miss logged %v, want a warning naming the chunk", e)
	}
}

// TestPutAfterCloseDropped guards Put's check of a closed writer: a chunk
// put after Close (a worker shutting down while a fetch completes) is
// dropped and counted, never written by a writer started after the end.
func TestPutAfterCloseDropped(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	dropped := testutil.ToFloat64(metrics.CacheWriteFailures.WithLabelValues("dropped"))
	data := chunkData(100, 43)
	s.Put(ctx, digest.FromBytes(data), data)
	s.Flush()
	if n := testutil.ToFloat64(metrics.CacheWriteFailures.WithLabelValues("dropped")) - dropped; n != 1 {
		t.Errorf("a chunk put after Close: %v drops counted, want 1", n)
	}
	if _, ok := openStore(t, dir).Get(ctx, digest.FromBytes(data), 100); ok {
		t.Error("a chunk put after Close was written")
	}
}

// TestUndeletableCorruptChunkLogged guards discard's reading of a failed
// delete: a corrupt chunk that cannot be deleted (here a read-only file
// system) is still never served, and the operator is told it stays, as an
// error, not that it was deleted.
func TestUndeletableCorruptChunkLogged(t *testing.T) {
	testreq.RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatalf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	s := openStore(t, dir)
	data := chunkData(1000, 45)
	d := put(t, s, data)
	path, _ := chunkPath(dir, d)
	if err := os.WriteFile(path, chunkData(1000, 46), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount the tmpfs read-only: %v", err)
	}
	logger, hook := logrustest.NewNullLogger()
	ctx := log.WithLogger(context.Background(), logrus.NewEntry(logger))
	if _, ok := s.Get(ctx, d, 1000); ok {
		t.Fatal("a corrupt chunk was served")
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("the corrupt chunk is gone from a read-only file system: %v", err)
	}
	var failed bool
	for _, e := range hook.AllEntries() {
		switch {
		case e.Level == logrus.ErrorLevel && strings.Contains(e.Message, "failed to delete"):
			failed = true
		case strings.Contains(e.Message, "deleted"):
			t.Errorf("logged %q for a chunk that could not be deleted", e.Message)
		}
	}
	if !failed {
		t.Error("no error logged for a corrupt chunk that could not be deleted")
	}
}

// TestLayerIndexWrittenOnce guards PutLayer's check for an index that is
// there already: a layer's index is immutable, like the layer, and a
// second PutLayer (another worker loading the layer) keeps the first.
func TestLayerIndexWrittenOnce(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	dir := t.TempDir()
	s := openStore(t, dir)
	layer := digest.FromString("layer")
	first := []ChunkRef{{Digest: digest.FromString("a"), Size: 1}}
	if err := s.PutLayer(ctx, layer, first); err != nil {
		t.Fatal(err)
	}
	if err := s.PutLayer(ctx, layer, []ChunkRef{{Digest: digest.FromString("b"), Size: 2}}); err != nil {
		t.Fatal(err)
	}
	path, _ := layerPath(dir, layer)
	if got, err := readLayer(path); err != nil || len(got) != 1 || got[0] != first[0] {
		t.Errorf("index after a second PutLayer = %v, %v; want the first, %v", got, err, first)
	}
}
