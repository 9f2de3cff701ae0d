package toc

import (
	"context"
	"fmt"
	"io"
)

// WithTail returns src with the blob's last len(tail) bytes already at hand
// (remote.Resolver.BlobTail fetches them with the request that learns the
// blob's size). Fetch then reads the footer and, when the tail covers it, the
// TOC without a request; a read that starts before the tail asks src only for
// the bytes before it, so no byte is fetched twice.
func WithTail(src Source, tail []byte) Source {
	return &tailSource{src: src, tail: tail}
}

type tailSource struct {
	src  Source
	tail []byte
}

func (t *tailSource) Size() int64 { return t.src.Size() }

// ReadAt follows Source.ReadAt. It makes at most one call to the wrapped
// source, as Fetch's one-request-per-read accounting expects.
func (t *tailSource) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	size := t.src.Size()
	start := size - int64(len(t.tail))
	if start < 0 {
		return 0, fmt.Errorf("tail of %d bytes is longer than the %d-byte blob", len(t.tail), size)
	}
	if off < 0 || off > size {
		return 0, fmt.Errorf("read at offset %d outside the %d-byte blob", off, size)
	}
	end := min(off+int64(len(p)), size)
	if end <= start {
		return t.src.ReadAt(ctx, p, off)
	}
	// The part from the tail, then what lies before it.
	from := max(off, start)
	n := copy(p[from-off:end-off], t.tail[from-start:])
	if from > off {
		head := p[:from-off]
		if m, err := t.src.ReadAt(ctx, head, off); m < len(head) {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		n += len(head)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Region reads what Fetch needs of an eStargz blob, the compressed TOC and
// the footer (the bytes from the TOC's offset to the end), with the footer's
// place and the compressed TOC's size bounded as Fetch bounds them, and
// nothing verified: it is how a layer is resolved ahead, before its TOC
// digest is known. Fetch(WithTail(src, region)) then verifies it all without
// a request. Through WithTail it costs at most one request.
func Region(ctx context.Context, src Source, lim Limits) ([]byte, error) {
	if err := lim.check(); err != nil {
		return nil, err
	}
	size := src.Size()
	tocOffset, footerSize, err := readFooter(ctx, src, size)
	if err != nil {
		return nil, err
	}
	if _, err := compressedTOCSize(size, tocOffset, footerSize, lim.MaxCompressedSize); err != nil {
		return nil, err
	}
	region := make([]byte, size-tocOffset)
	if err := readFull(ctx, src, region, tocOffset); err != nil {
		return nil, fmt.Errorf("failed to read %d bytes of TOC and footer at offset %d: %w", len(region), tocOffset, err)
	}
	return region, nil
}
