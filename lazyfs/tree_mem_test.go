package lazyfs

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
)

// bigTOC returns a TOC of about n entries shaped like a distribution
// layer: directories of 500 files with realistic names, one in 50 files
// split into four chunks, some symlinks and hard links.
func bigTOC(n int) (*estargz.JTOC, int64) {
	toc := &estargz.JTOC{Version: 1, Entries: make([]*estargz.TOCEntry, 0, n)}
	off := int64(100)
	next := func(size int64) int64 { o := off; off += size/3 + 64; return o }
	mtime := "2024-01-02T03:04:05Z"
	for d := 0; len(toc.Entries) < n; d++ {
		dir := fmt.Sprintf("usr/share/doc/package-%05d", d)
		toc.Entries = append(toc.Entries, &estargz.TOCEntry{Name: dir + "/", Type: "dir", Mode: 0o755, ModTime3339: mtime})
		for f := 0; f < 500 && len(toc.Entries) < n; f++ {
			name := fmt.Sprintf("%s/file-%05d.txt", dir, f)
			i := len(toc.Entries)
			switch {
			case f%97 == 1:
				toc.Entries = append(toc.Entries, &estargz.TOCEntry{Name: name, Type: "symlink", LinkName: "../../common/license.txt", Mode: 0o777, ModTime3339: mtime})
			case f%89 == 2:
				toc.Entries = append(toc.Entries, &estargz.TOCEntry{Name: name, Type: "hardlink", LinkName: fmt.Sprintf("%s/file-%05d.txt", dir, 0), ModTime3339: mtime})
			case f%50 == 3:
				const chunk = 4 << 20
				e := &estargz.TOCEntry{Name: name, Type: "reg", Size: 4 * chunk, Mode: 0o644, ModTime3339: mtime,
					Offset: next(chunk), ChunkSize: chunk, ChunkDigest: testDigest(i), Digest: testDigest(-i)}
				toc.Entries = append(toc.Entries, e)
				for c := int64(1); c < 4; c++ {
					toc.Entries = append(toc.Entries, &estargz.TOCEntry{Name: name, Type: "chunk", Offset: next(chunk),
						ChunkOffset: c * chunk, ChunkSize: chunk, ChunkDigest: testDigest(i + int(c)*1e7)})
				}
			default:
				size := int64(1000 + f*37)
				toc.Entries = append(toc.Entries, &estargz.TOCEntry{Name: name, Type: "reg", Size: size, Mode: 0o644, ModTime3339: mtime,
					Offset: next(size), ChunkDigest: testDigest(i), Digest: testDigest(-i)})
			}
		}
	}
	return toc, off
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestTreeMemory300k guards the worker's memory budget (200 MiB RSS with a
// 300,000-entry layer mounted): the tree alone, once the caller dropped the
// JTOC, must stay a fraction of it.
func TestTreeMemory300k(t *testing.T) {
	const entries = 300_000
	const budget = 72 << 20

	base := heapInUse()
	toc, tocOffset := bigTOC(entries)
	withTOC := heapInUse()

	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	tr, err := NewTree(toc, tocOffset)
	if err != nil {
		t.Fatal(err)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	toc = nil
	retained := heapInUse() - base

	t.Logf("JTOC of %d entries: %.1f MiB; NewTree allocated %.1f MiB in %d allocations; tree retains %.1f MiB (%d nodes, %d dirents, %d chunks) once the JTOC is dropped",
		entries, mib(withTOC-base), mib(after.TotalAlloc-before.TotalAlloc), after.Mallocs-before.Mallocs,
		mib(retained), tr.Len(), len(tr.dirents), len(tr.chunks))
	if retained > budget {
		t.Errorf("tree retains %.1f MiB, budget %.1f MiB", mib(retained), mib(budget))
	}
	runtime.KeepAlive(tr)
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func BenchmarkNewTree300k(b *testing.B) {
	toc, tocOffset := bigTOC(300_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewTree(toc, tocOffset); err != nil {
			b.Fatal(err)
		}
	}
}
