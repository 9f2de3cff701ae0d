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
