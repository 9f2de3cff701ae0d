package chunks

import (
	"context"
	"testing"
	"time"
)

// BenchmarkSmallFiles reads 2000 small files (about 125 bytes each, next to
// each other in the blob, as in a package directory) one after the other
// through ReadAt, from a source that takes 2 ms a request like a registry
// would, with read-ahead at its default, smaller, and off. Each pass starts with a
// new Reader (cold memory cache) and reports its source requests.
func BenchmarkSmallFiles(b *testing.B) {
	s := buildSmallFiles(b, 2000, streamLayouts[0].opts...)
	total, _ := s.payload()
	ctx := context.Background()
	for _, bc := range []struct {
		name      string
		readAhead int64
	}{
		{"readahead=default", 0},
		{"readahead=64KiB", 64 << 10},
		{"readahead=off", -1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var src *memSource
			for b.Loop() {
				src = &memSource{blob: s.blob, hook: func(context.Context, int, []byte, int64) error {
					time.Sleep(2 * time.Millisecond)
					return nil
				}}
				r := NewReader(src, Options{Layout: s.layout, ReadAhead: bc.readAhead, LayerDigest: testLayerDigest})
				for _, name := range s.small {
					if err := s.readFile(ctx, r, name); err != nil {
						b.Fatal(err)
					}
				}
			}
			perPass := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(len(src.spans())), "requests/op")
			b.Logf("%s: %d files (%d compressed bytes): %d requests, %v per pass",
				bc.name, len(s.small), total, len(src.spans()), perPass)
		})
	}
}
