package chunks

import (
	"context"
	"io"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
)

// BenchmarkDiskTier reads a 64 MiB file (1 MiB chunks) sequentially in
// 128 KiB pieces through a fresh Reader (empty memory, as after a restart):
// "source" decompresses and verifies every chunk from an in-memory blob
// (a registry with no latency: the cheapest possible miss), "disk" reads
// and verifies each chunk from the disk cache.
func BenchmarkDiskTier(b *testing.B) {
	const size, piece = 64 << 20, 128 << 10
	l := buildLayer(b, []testFile{{"f", fileData(size, 11)}}, estargz.WithChunkSize(1<<20))
	file := l.files["f"]
	ctx := context.Background()
	disk := openDisk(b, b.TempDir())
	readAll(ctx, b, NewReader(&memSource{blob: l.blob}, Options{LayerDigest: testLayerDigest, Disk: disk}), file, piece)
	disk.Flush()

	for _, bc := range []struct {
		name string
		disk DiskCache
	}{
		{"source", nil},
		{"disk", disk},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(size)
			p := make([]byte, piece)
			for b.Loop() {
				r := NewReader(&memSource{blob: l.blob}, Options{LayerDigest: testLayerDigest, Disk: bc.disk, SequentialPrefetch: -1})
				for off := int64(0); off < size; off += piece {
					if _, err := r.ReadAt(ctx, file, p, off); err != nil && err != io.EOF {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
