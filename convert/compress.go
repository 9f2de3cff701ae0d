package convert

import (
	"compress/gzip"
	"hash"
	"io"
	"sync"

	"github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
)

// pooledGzip is estargz's gzip compression with its writers reused.
// estargz starts a gzip stream per file (so that a lazy read of a file
// decompresses that file alone) and asks its Compressor for a new writer
// each time; a new gzip.Writer allocates and clears about a megabyte of
// compressor state at its first write, which for a layer of many small
// files costs far more than compressing them. A reset writer produces the
// same bytes as a new one, so the blob does not change.
type pooledGzip struct {
	estargz.GzipDecompressor
	level int
	toc   *estargz.GzipCompressor
	pool  sync.Pool
}

var _ estargz.Compression = (*pooledGzip)(nil)

func newPooledGzip(level int) *pooledGzip {
	return &pooledGzip{level: level, toc: estargz.NewGzipCompressorWithLevel(level)}
}

// Writer returns a gzip writer onto w, taken from the pool when one is
// there; closing it puts it back.
func (p *pooledGzip) Writer(w io.Writer) (estargz.WriteFlushCloser, error) {
	gz, _ := p.pool.Get().(*gzip.Writer)
	if gz == nil {
		var err error
		if gz, err = gzip.NewWriterLevel(w, p.level); err != nil {
			return nil, err
		}
	} else {
		gz.Reset(w)
	}
	return &pooledWriter{Writer: gz, pool: &p.pool}, nil
}

// WriteTOCAndFooter writes the TOC and footer as estargz's own gzip
// compressor does (once per layer: nothing to reuse).
func (p *pooledGzip) WriteTOCAndFooter(w io.Writer, off int64, toc *estargz.JTOC, diffHash hash.Hash) (digest.Digest, error) {
	return p.toc.WriteTOCAndFooter(w, off, toc, diffHash)
}

// pooledWriter returns its gzip.Writer to the pool at the first Close;
// a second Close is a no-op, never a second use of a pooled writer.
type pooledWriter struct {
	*gzip.Writer
	pool *sync.Pool
}

func (w *pooledWriter) Close() error {
	if w.Writer == nil {
		return nil
	}
	err := w.Writer.Close()
	w.pool.Put(w.Writer)
	w.Writer = nil
	return err
}
