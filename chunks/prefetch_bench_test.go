package chunks

import (
	"context"
	"io"
	"testing"
	"time"
)

// BenchmarkSequentialPrefetch reads a 64 MiB file (16 chunks of 4 MiB)
// sequentially in 128 KiB pieces, as the kernel's FUSE reads come, from a
// source that takes 20 ms a request like a registry would, each pass with a
// new Reader (cold memory cache), with sequential prefetch at its default
// and off.
func BenchmarkSequentialPrefetch(b *testing.B) {
	const size, piece = 64 << 20, 128 << 10
	l := buildLayer(b, []testFile{{"f", fileData(size, 11)}})
	file := l.files["f"]
	for _, bc := range []struct {
		name     string
		prefetch int
	}{
		{"prefetch=default", 0},
		{"prefetch=off", -1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var src *memSource
			p := make([]byte, piece)
			b.SetBytes(size)
			for b.Loop() {
				ctx, cancel := context.WithCancel(context.Background())
				src = &memSource{blob: l.blob, hook: sleepHook(20 * time.Millisecond)}
				r := NewReader(src, Options{LayerDigest: testLayerDigest, SequentialPrefetch: bc.prefetch, Context: ctx})
				for off := int64(0); off < size; off += piece {
					if _, err := r.ReadAt(ctx, file, p, off); err != nil && err != io.EOF {
						b.Fatal(err)
					}
				}
				cancel()
				r.waitBackground()
			}
			perPass := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(len(src.spans())), "requests/op")
			b.Logf("%s: %d chunks, %d requests, %v per pass", bc.name, len(file), len(src.spans()), perPass)
		})
	}
}
