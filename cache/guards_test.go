package cache

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/log/logtest"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
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
// a negative size is not one PutLayer wrote, and the index is refused.
func TestReadLayerRefusesNegativeSizes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index")
	d := digest.FromString("x")
	for line, ok := range map[string]bool{
		d.String() + " 0\n":  true,
		d.String() + " 12\n": true,
		d.String() + " -1\n": false,
		d.String() + "\n":    false,
		"sha256:nope 12\n":   false,
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
