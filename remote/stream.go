package remote

import (
	"context"
	"io"
)

// StreamChunk is the size of each range request of a Stream: large enough
// that a whole-blob read costs few requests, small enough that a request
// cut by RequestTimeout on a slow link loses little.
const StreamChunk = 4 << 20

// Stream reads the whole blob from its first byte to its last, in range
// requests of StreamChunk bytes made one after the other, each with the
// retries and host fail-over of ReadAt. It is for reading a blob once from
// start to end (e.g. to compute its digests); it keeps one chunk in memory.
func (b *Blob) Stream(ctx context.Context) io.Reader {
	return &stream{ctx: ctx, blob: b}
}

type stream struct {
	ctx  context.Context
	blob *Blob
	off  int64
	buf  []byte
	pos  int // next byte of buf to hand out
	err  error
}

func (s *stream) Read(p []byte) (int, error) {
	if s.pos == len(s.buf) && s.err == nil {
		s.fill()
	}
	if s.pos == len(s.buf) {
		return 0, s.err
	}
	n := copy(p, s.buf[s.pos:])
	s.pos += n
	return n, nil
}

// fill fetches the next chunk into buf.
func (s *stream) fill() {
	if s.off >= s.blob.size {
		s.err = io.EOF
		return
	}
	if s.buf == nil {
		s.buf = make([]byte, min(StreamChunk, s.blob.size))
	}
	s.buf = s.buf[:min(int64(cap(s.buf)), s.blob.size-s.off)]
	n, err := s.blob.ReadAt(s.ctx, s.buf, s.off)
	if err != nil && err != io.EOF {
		s.buf, s.pos, s.err = s.buf[:0], 0, err
		return
	}
	s.buf, s.pos = s.buf[:n], 0
	s.off += int64(n)
}
