package chunks

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"
)

// testLayer is a real eStargz blob with the chunk lists of its regular
// files taken from its TOC, as the FUSE filesystem will get them.
type testLayer struct {
	blob  []byte
	files map[string][]Chunk
	data  map[string][]byte
}

type testFile struct {
	name string
	data []byte
}

// fileData returns n bytes that compress somewhat (like real binaries and
// text do), seeded by seed.
func fileData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	words := [][]byte{[]byte("lazy "), []byte("chunk "), []byte("registry "), []byte("\x00\x01\x02"), []byte("verified\n")}
	b := make([]byte, 0, n+16)
	for len(b) < n {
		if r.IntN(4) == 0 {
			b = append(b, byte(r.Uint32()))
			continue
		}
		b = append(b, words[r.IntN(len(words))]...)
	}
	return b[:n]
}

func buildLayer(tb testing.TB, files []testFile, opts ...estargz.Option) *testLayer {
	tb.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	// Fast compression keeps the tests quick; later options may override.
	opts = append([]estargz.Option{estargz.WithCompression(newPooledGzip(gzip.BestSpeed))}, opts...)
	rc, err := estargz.Build(io.NewSectionReader(bytes.NewReader(tarBuf.Bytes()), 0, int64(tarBuf.Len())), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	blob, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		tb.Fatal(err)
	}

	sr := io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob)))
	tocOffset, footerSize, err := estargz.OpenFooter(sr)
	if err != nil {
		tb.Fatal(err)
	}
	toc, _, err := (&estargz.GzipDecompressor{}).ParseTOC(bytes.NewReader(blob[tocOffset : int64(len(blob))-footerSize]))
	if err != nil {
		tb.Fatal(err)
	}

	// A chunk's compressed stream ends where the next larger distinct
	// entry offset begins, or at the TOC for the last one.
	var offsets []int64
	for _, e := range toc.Entries {
		offsets = append(offsets, e.Offset)
	}
	sort.Slice(offsets, func(i, j int) bool { return offsets[i] < offsets[j] })
	blobEnd := func(off int64) int64 {
		i := sort.Search(len(offsets), func(i int) bool { return offsets[i] > off })
		if i == len(offsets) {
			return tocOffset
		}
		return offsets[i]
	}

	l := &testLayer{blob: blob, files: make(map[string][]Chunk), data: make(map[string][]byte)}
	for _, f := range files {
		l.data[f.name] = f.data
	}
	var cur string
	var curSize int64
	for _, e := range toc.Entries {
		switch e.Type {
		case "reg":
			cur, curSize = e.Name, e.Size
		case "chunk":
		default:
			continue
		}
		if curSize == 0 {
			continue
		}
		size := e.ChunkSize
		if size == 0 {
			size = curSize - e.ChunkOffset
		}
		l.files[cur] = append(l.files[cur], Chunk{
			Offset:      e.ChunkOffset,
			Size:        size,
			BlobOffset:  e.Offset,
			BlobSize:    blobEnd(e.Offset) - e.Offset,
			InnerOffset: e.InnerOffset,
			Digest:      digest.Digest(e.ChunkDigest),
		})
	}
	return l
}

// pooledGzip is eStargz's gzip compression with its writers reused:
// estargz.Build starts a gzip stream per chunk, and a new flate writer
// allocates about a megabyte, which made a layer of a thousand small files
// take seconds to build (tens under -race). The bytes are the same.
type pooledGzip struct {
	*estargz.GzipCompressor
	*estargz.GzipDecompressor
	level int
	pool  sync.Pool // of *gzip.Writer
}

func newPooledGzip(level int) *pooledGzip {
	return &pooledGzip{
		GzipCompressor:   estargz.NewGzipCompressorWithLevel(level),
		GzipDecompressor: &estargz.GzipDecompressor{},
		level:            level,
	}
}

func (c *pooledGzip) Writer(w io.Writer) (estargz.WriteFlushCloser, error) {
	if zw, ok := c.pool.Get().(*gzip.Writer); ok {
		zw.Reset(w)
		return pooledGzipWriter{zw, &c.pool}, nil
	}
	zw, err := gzip.NewWriterLevel(w, c.level)
	if err != nil {
		return nil, err
	}
	return pooledGzipWriter{zw, &c.pool}, nil
}

// pooledGzipWriter returns its gzip writer to the pool once closed.
type pooledGzipWriter struct {
	*gzip.Writer
	pool *sync.Pool
}

func (w pooledGzipWriter) Close() error {
	err := w.Writer.Close()
	w.pool.Put(w.Writer)
	return err
}
