package toc_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/toc"
)

// TestStorePrune guards Prune's two conditions: a TOC that a snapshot
// still uses is kept whatever its age; one no snapshot uses is removed
// once written before the cutoff, and kept when written at it (a layer
// being mounted has stored its TOC but not committed its snapshot yet).
func TestStorePrune(t *testing.T) {
	l := fetchedBase(t)
	s, dir := newStore(t)
	if err := s.Put(l); err != nil {
		t.Fatal(err)
	}
	tocPath, metaPath := storedPaths(dir, l.TOCDigest)
	// An older lazyfs's JSON of the same TOC goes with it.
	legacy := legacyPath(dir, l.TOCDigest)
	if err := os.WriteFile(legacy, tocJSON(t, l), 0o600); err != nil {
		t.Fatal(err)
	}
	written := time.Now().Add(-time.Hour).Truncate(time.Second)
	for _, p := range []string{tocPath, metaPath} {
		if err := os.Chtimes(p, written, written); err != nil {
			t.Fatal(err)
		}
	}
	keepAll := func(digest.Digest) bool { return true }
	keepNone := func(digest.Digest) bool { return false }

	if n, err := s.Prune(keepAll, time.Now()); err != nil || n != 0 {
		t.Fatalf("Prune of a used TOC = %d, %v; want 0 removed", n, err)
	}
	if n, err := s.Prune(keepNone, written); err != nil || n != 0 {
		t.Fatalf("Prune with the cutoff at the TOC's write time = %d, %v; want 0 removed", n, err)
	}
	if _, err := s.Get(l.TOCDigest, toc.DefaultLimits()); err != nil {
		t.Fatalf("a kept TOC does not load: %v", err)
	}
	if n, err := s.Prune(keepNone, written.Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("Prune of an unused old TOC = %d, %v; want 1 removed", n, err)
	}
	for _, p := range []string{tocPath, legacy, metaPath} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
	if _, err := s.Get(l.TOCDigest, toc.DefaultLimits()); !errdefs.IsNotFound(err) {
		t.Errorf("Get of a pruned TOC: %v, want not found", err)
	}
}
