package chunks

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
)

// span is one ReadAt call on a source.
type span struct{ off, len int64 }

// memSource serves a blob from memory, counts its calls and can inject
// faults and delays.
type memSource struct {
	blob []byte

	mu    sync.Mutex
	calls []span

	// hook, if set, runs on every call (n counts calls from 1) after p is
	// filled and may change p or return an error.
	hook func(ctx context.Context, n int, p []byte, off int64) error

	active, maxActive atomic.Int32
}

func (s *memSource) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	a := s.active.Add(1)
	defer s.active.Add(-1)
	for {
		m := s.maxActive.Load()
		if a <= m || s.maxActive.CompareAndSwap(m, a) {
			break
		}
	}
	s.mu.Lock()
	s.calls = append(s.calls, span{off, int64(len(p))})
	n := len(s.calls)
	s.mu.Unlock()

	if off >= int64(len(s.blob)) {
		return 0, io.EOF
	}
	c := copy(p, s.blob[off:])
	if s.hook != nil {
		if err := s.hook(ctx, n, p, off); err != nil {
			return 0, err
		}
	}
	if c < len(p) {
		return c, io.EOF
	}
	return c, nil
}

func (s *memSource) spans() []span {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]span(nil), s.calls...)
}

// fetchesOf counts, per chunk, the source calls whose range covered it.
func fetchesOf(s *memSource, file []Chunk) []int {
	counts := make([]int, len(file))
	for _, sp := range s.spans() {
		for i, c := range file {
			if c.BlobOffset >= sp.off && c.BlobOffset+c.BlobSize <= sp.off+sp.len {
				counts[i]++
			}
		}
	}
	return counts
}
