package chunks

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
)

// decode decompresses one chunk from its compressed stream comp and
// verifies it: the gzip stream starting at the chunk's blob offset is
// decompressed, InnerOffset bytes skipped, and exactly Size bytes taken,
// never more (a hostile stream may inflate without end), which must match
// the chunk's digest. Any failure is an ErrVerification: the bytes are bad.
func (r *Reader) decode(c Chunk, comp []byte) ([]byte, error) {
	if err := c.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("%w: chunk digest %q: %w", ErrVerification, c.Digest, err)
	}
	zr, err := r.gzipReader(comp)
	if err != nil {
		return nil, fmt.Errorf("%w: not a gzip stream: %w", ErrVerification, err)
	}
	defer r.gzipReaders.Put(zr)
	if c.InnerOffset > 0 {
		if _, err := io.CopyN(io.Discard, zr, c.InnerOffset); err != nil {
			return nil, fmt.Errorf("%w: skipping %d bytes to the chunk: %w", ErrVerification, c.InnerOffset, err)
		}
	}
	data := make([]byte, c.Size)
	if n, err := io.ReadFull(zr, data); err != nil {
		return nil, fmt.Errorf("%w: decompressed %d of %d bytes: %w", ErrVerification, n, c.Size, err)
	}
	if got := c.Digest.Algorithm().FromBytes(data); got != c.Digest {
		return nil, fmt.Errorf("%w: decompressed bytes have digest %s, the TOC says %s", ErrVerification, got, c.Digest)
	}
	return data, nil
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
