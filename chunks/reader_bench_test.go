package chunks

import (
	"context"
	"io"
	"testing"
	"time"
)

// BenchmarkSequentialRead reads a 64 MiB file (default 4 MiB eStargz
// chunks) sequentially in 128 KiB pieces, as the kernel's FUSE reads come,
// from an in-memory source, and reports how many times slower that is than
// copying the plain bytes in the same pieces ("x-copy"). "cold" starts each
// pass with an empty memory cache (decompress and verify every chunk);
// "warm" reads through a cache that holds the whole file.
func BenchmarkSequentialRead(b *testing.B) {
	const size, piece = 64 << 20, 128 << 10
	l := buildLayer(b, []testFile{{"f", fileData(size, 11)}})
	file, plain := l.files["f"], l.data["f"]
	src := &memSource{blob: l.blob}
	ctx := context.Background()

	copyPass := timeCopyPass(plain, piece)
	for _, bc := range []struct {
		name  string
		cache int64
		fresh bool
	}{
		{"cold", DefaultMemoryCacheSize, true},
		{"warm", 2 * size, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := NewReader(src, Options{MemoryCacheSize: bc.cache, LayerDigest: testLayerDigest})
			p := make([]byte, piece)
			pass := func() {
				for off := int64(0); off < size; off += piece {
					if _, err := r.ReadAt(ctx, file, p, off); err != nil && err != io.EOF {
						b.Fatal(err)
					}
				}
			}
			if !bc.fresh {
				pass()
			}
			b.SetBytes(size)
			b.ResetTimer()
			for b.Loop() {
				if bc.fresh {
					r = NewReader(src, Options{MemoryCacheSize: bc.cache, LayerDigest: testLayerDigest})
				}
				pass()
			}
			perPass := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(perPass)/float64(copyPass), "x-copy")
			b.Logf("%s: %v per 64 MiB pass through ReadAt, %v copying plain bytes (%.1fx)",
				bc.name, perPass, copyPass, float64(perPass)/float64(copyPass))
		})
	}
}

// timeCopyPass measures one pass of copying plain in pieces, the floor any
// read path is compared with.
func timeCopyPass(plain []byte, piece int) time.Duration {
	p := make([]byte, piece)
	var passes int
	start := time.Now()
	for time.Since(start) < 200*time.Millisecond || passes < 3 {
		for off := 0; off < len(plain); off += piece {
			copy(p, plain[off:])
		}
		passes++
	}
	return time.Since(start) / time.Duration(passes)
}
