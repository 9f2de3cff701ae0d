package toc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/toc"
)

// largeLayer forges a layer of n entries shaped like a big node_modules
// tree: a directory per 20 files, each file one chunk with a chunk digest,
// marshalled as estargz marshals TOCs.
func largeLayer(t testing.TB, n int) ([]byte, digest.Digest, int) {
	const bytesPerChunk = 16 // compressed bytes each file gets in the body
	jtoc := &estargz.JTOC{Version: 1}
	var off int64
	dirName := ""
	for i := 0; len(jtoc.Entries) < n; i++ {
		if i%20 == 0 {
			dirName = fmt.Sprintf("node_modules/pkg%06d/lib/", i/20)
			jtoc.Entries = append(jtoc.Entries, &estargz.TOCEntry{Name: dirName, Type: "dir", Mode: 0o755, ModTime3339: "2024-01-02T03:04:05Z"})
			continue
		}
		d := digest.FromString(fmt.Sprint(i)).String()
		jtoc.Entries = append(jtoc.Entries, &estargz.TOCEntry{
			Name: fmt.Sprintf("%sfile%d.js", dirName, i), Type: "reg", Size: 1000, Mode: 0o644,
			ModTime3339: "2024-01-02T03:04:05Z", Offset: off, Digest: d, ChunkDigest: d,
		})
		off += bytesPerChunk
	}
	tocJSON, err := json.MarshalIndent(jtoc, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	blob, d := forgeRaw(t, make([]byte, off), tocJSON)
	return blob, d, len(tocJSON)
}

// BenchmarkFetch300k measures Fetch (decompress, verify, decode, validate)
// of a 300,000-entry TOC from memory.
func BenchmarkFetch300k(b *testing.B) {
	blob, tocDigest, jsonSize := largeLayer(b, 300_000)
	src := newSource(blob)
	lim := toc.DefaultLimits()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := toc.Fetch(ctx, src, blobDigest(blob), tocDigest, lim); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(jsonSize), "toc_bytes")
	b.ReportMetric(float64(len(blob)), "blob_bytes")
}

// BenchmarkValidate300k measures Validate alone on the same TOC.
func BenchmarkValidate300k(b *testing.B) {
	blob, tocDigest, _ := largeLayer(b, 300_000)
	l, err := toc.Fetch(context.Background(), newSource(blob), blobDigest(blob), tocDigest, toc.DefaultLimits())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := toc.Validate(l, toc.DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
}
