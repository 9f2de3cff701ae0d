package chunks

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
)

// decodeStream decompresses and verifies the chunks cs, which all start in
// the compressed stream comp (the bytes from their common BlobOffset), into
// datas and errs: the stream is decompressed, each chunk's InnerOffset
// bytes into it skipped, and exactly its Size bytes taken, never more (a
// hostile stream may inflate without end), which must match its digest.
// Chunks sorted by InnerOffset cost one pass over the stream, which matters
// when many small files share one (estargz WithMinChunkSize): decoding each
// from the start would be quadratic. Any failure is an ErrVerification: the
// bytes are bad.
func (r *Reader) decodeStream(cs []Chunk, comp []byte, datas [][]byte, errs []error) {
	var zr *gzip.Reader
	var pos int64 // decompressed bytes zr has produced
	drop := func() {
		if zr != nil {
			r.gzipReaders.Put(zr)
			zr = nil
		}
	}
	defer drop()
	for i, c := range cs {
		if err := c.Digest.Validate(); err != nil {
			errs[i] = fmt.Errorf("%w: chunk digest %q: %w", ErrVerification, c.Digest, err)
			continue
		}
		if zr == nil || c.InnerOffset < pos {
			// First chunk, one that overlaps the previous, or the
			// stream failed before: start the stream again.
			drop()
			z, err := r.gzipReader(comp)
			if err != nil {
				errs[i] = fmt.Errorf("%w: not a gzip stream: %w", ErrVerification, err)
				continue
			}
			zr, pos = z, 0
		}
		// Skip to the chunk (nothing when it starts where the last
		// ended), then take exactly its Size bytes: a stream that ends
		// before is refused even where the digest would hold for the
		// zeros the rest of data keeps.
		data := make([]byte, c.Size)
		skipped, err := io.CopyN(io.Discard, zr, c.InnerOffset-pos)
		var n int
		if err == nil {
			n, err = io.ReadFull(zr, data)
		}
		pos += skipped + int64(n)
		if err != nil {
			errs[i] = fmt.Errorf("%w: decompressed %d bytes of the stream, short of the %d-byte chunk at inner offset %d: %w",
				ErrVerification, pos, c.Size, c.InnerOffset, err)
			drop()
			continue
		}
		if got := c.Digest.Algorithm().FromBytes(data); got != c.Digest {
			errs[i] = fmt.Errorf("%w: decompressed bytes have digest %s, the TOC says %s", ErrVerification, got, c.Digest)
			continue
		}
		datas[i] = data
	}
}

// gzipReader returns a pooled gzip reader positioned at the start of comp.
func (r *Reader) gzipReader(comp []byte) (*gzip.Reader, error) {
	if zr, ok := r.gzipReaders.Get().(*gzip.Reader); ok {
		if err := zr.Reset(bytes.NewReader(comp)); err != nil {
			r.gzipReaders.Put(zr)
			return nil, err
		}
		return zr, nil
	}
	return gzip.NewReader(bytes.NewReader(comp))
}
