package main

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestConversionCacheKey(t *testing.T) {
	repo := t.TempDir()
	if err := os.MkdirAll(filepath.Join(repo, "convert"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(repo, "convert", "layer.go")
	write := func(s string) {
		if err := os.WriteFile(src, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("package convert\n")
	c := conversionCache{dir: t.TempDir()}
	key := func(d digest.Digest, level int) string {
		k, err := c.key(repo, d, level)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	a, b := digest.FromString("a"), digest.FromString("b")
	base := key(a, gzip.BestSpeed)
	if key(a, gzip.BestSpeed) != base {
		t.Fatal("the same inputs gave another key")
	}
	if key(b, gzip.BestSpeed) == base || key(a, gzip.BestCompression) == base {
		t.Fatal("another source or level gave the same key")
	}
	write("package convert // changed\n")
	if key(a, gzip.BestSpeed) == base {
		t.Fatal("changed convert sources gave the same key")
	}
	if c.lookup(base) != "" {
		t.Fatal("lookup found a layout that was never stored")
	}
}
