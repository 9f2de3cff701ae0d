package convert

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
)

// smallFilesTar returns a tar of n small regular files in d directories.
func smallFilesTar(tb testing.TB, n, d int) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := range d {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("d%03d/", i), Mode: 0o755}); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range n {
		body := []byte(fmt.Sprintf("file %d of a layer of many small files\n", i))
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("d%03d/f%07d", i%d, i), Mode: 0o644, Size: int64(len(body))}
		if err := tw.WriteHeader(hdr); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func buildWith(tb testing.TB, raw []byte, opts ...estargz.Option) []byte {
	tb.Helper()
	blob, err := estargz.Build(io.NewSectionReader(bytes.NewReader(raw), 0, int64(len(raw))), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	defer blob.Close()
	b, err := io.ReadAll(blob)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestPooledGzipSameBlob: reusing gzip writers must not change a byte of
// the layer (its digest is what images name), at the default level and
// another one.
func TestPooledGzipSameBlob(t *testing.T) {
	raw := smallFilesTar(t, 2000, 20)
	for _, level := range []int{gzip.BestCompression, gzip.BestSpeed} {
		want := buildWith(t, raw, estargz.WithCompressionLevel(level))
		got := buildWith(t, raw, estargz.WithCompression(newPooledGzip(level)))
		if !bytes.Equal(got, want) {
			t.Errorf("level %d: the pooled build differs from estargz's (%d vs %d bytes)", level, len(got), len(want))
		}
	}
}

// TestPooledWriterCloseOnce guards the pool against a writer put back twice
// (two users of one gzip.Writer would interleave two streams): a second
// Close is a no-op.
func TestPooledWriterCloseOnce(t *testing.T) {
	p := newPooledGzip(gzip.BestSpeed)
	var a bytes.Buffer
	w, err := p.Writer(&a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Two writers taken now must be two different gzip.Writers.
	var b, c bytes.Buffer
	w1, _ := p.Writer(&b)
	w2, _ := p.Writer(&c)
	if w1.(*pooledWriter).Writer == w2.(*pooledWriter).Writer {
		t.Fatal("one gzip.Writer handed out twice")
	}
	var wg sync.WaitGroup
	for i, w := range []estargz.WriteFlushCloser{w1, w2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fmt.Fprintf(w, "stream %d", i)
			w.Close()
		}()
	}
	wg.Wait()
	for i, buf := range []*bytes.Buffer{&b, &c} {
		r, err := gzip.NewReader(buf)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r)
		if string(got) != fmt.Sprintf("stream %d", i) {
			t.Errorf("stream %d reads %q", i, got)
		}
	}
}

// BenchmarkBuildSmallFiles builds an eStargz layer of many small files
// with estargz's compressor (a gzip writer per file) and with the pooled
// one: the ratio is what reusing writers buys (make bench; the 300,000-file
// figure of issue 13 is LAZYFS_BENCH_SMALL_FILES=300000).
func BenchmarkBuildSmallFiles(b *testing.B) {
	n := benchSmallFiles()
	raw := smallFilesTar(b, n, 1000)
	for _, tc := range []struct {
		name string
		opt  func() estargz.Option
	}{
		{"estargz-writer-per-file", func() estargz.Option { return estargz.WithCompressionLevel(gzip.BestCompression) }},
		{"pooled", func() estargz.Option { return estargz.WithCompression(newPooledGzip(gzip.BestCompression)) }},
	} {
		b.Run(fmt.Sprintf("%s/files=%d", tc.name, n), func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				buildWith(b, raw, tc.opt())
			}
		})
	}
}

func benchSmallFiles() int {
	var n int
	if _, err := fmt.Sscan(os.Getenv("LAZYFS_BENCH_SMALL_FILES"), &n); err != nil || n <= 0 {
		return 30000
	}
	return n
}
