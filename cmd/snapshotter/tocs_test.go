package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/labels"
	"github.com/lazyfs/lazyfs/toc"
)

// fakeWalker lists snapshots with the given TOC digests, or fails.
type fakeWalker struct {
	tocs []digest.Digest
	err  error
}

func (w fakeWalker) Walk(ctx context.Context, fn snapshots.WalkFunc, _ ...string) error {
	if w.err != nil {
		return w.err
	}
	for i, d := range w.tocs {
		if err := fn(ctx, snapshots.Info{Name: string(rune('a' + i)), Labels: map[string]string{labels.TOCDigest: d.String()}}); err != nil {
			return err
		}
	}
	return nil
}

// storeTOC writes the two files of a stored TOC, written an hour ago.
func storeTOC(t *testing.T, dir string, d digest.Digest) string {
	t.Helper()
	alg := filepath.Join(dir, string(d.Algorithm()))
	if err := os.MkdirAll(alg, 0o700); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	for _, suffix := range []string{".toc.gz", ".meta.json"} {
		p := filepath.Join(alg, d.Encoded()+suffix)
		if err := os.WriteFile(p, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(alg, d.Encoded()+".toc.gz")
}

// TestPruneTOCs guards the snapshot check of the TOC pruner: a TOC a
// snapshot names stays, one none names goes, and nothing goes when the
// snapshots cannot be listed.
func TestPruneTOCs(t *testing.T) {
	dir := t.TempDir()
	store, err := toc.NewStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	used, unused := digest.FromString("used"), digest.FromString("unused")
	usedPath, unusedPath := storeTOC(t, dir, used), storeTOC(t, dir, unused)
	ctx := context.Background()

	pruneTOCs(ctx, store, fakeWalker{err: errors.New("bolt: closed")}, time.Now())
	for _, p := range []string{usedPath, unusedPath} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("pruned with no snapshot list: %v", err)
		}
	}
	pruneTOCs(ctx, store, fakeWalker{tocs: []digest.Digest{used}}, time.Now())
	if _, err := os.Stat(usedPath); err != nil {
		t.Errorf("the TOC a snapshot uses was removed: %v", err)
	}
	if _, err := os.Stat(unusedPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the TOC no snapshot uses is still there: %v", err)
	}
}
