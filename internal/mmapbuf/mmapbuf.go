// Package mmapbuf keeps large I/O buffers of one size outside the Go heap,
// reused from one request to the next.
//
// A worker's large buffers (a FUSE READ reply, a 4 MiB registry range) live
// for one request each. Allocated on the heap, every one is zeroed by the
// runtime, faulted in by the kernel and then left for the collector, which
// made them the worker's largest CPU cost after hashing, and its largest
// share of the heap (the collector paces itself by it) once the memory tier
// is small. Mapped buffers cost a fault only the first time a page is
// touched, never count as heap, and a List keeps at most a few of them, so
// that what stays resident is bounded by keep × size, whatever the peak.
package mmapbuf

import (
	"sync"

	"golang.org/x/sys/unix"
)

// List hands out buffers of one size and keeps at most keep of those given
// back. It is safe for concurrent use.
type List struct {
	size, keep int

	mu   sync.Mutex
	free [][]byte
}

// New returns a List of buffers of size bytes keeping at most keep.
func New(size, keep int) *List { return &List{size: size, keep: keep} }

// Size is the size of the List's buffers.
func (l *List) Size() int { return l.size }

// Get returns a buffer of Size bytes (its contents are whatever the last
// user left). If the kernel refuses a mapping, the buffer comes from the
// heap instead, and Put drops it.
func (l *List) Get() []byte {
	l.mu.Lock()
	if n := len(l.free); n > 0 {
		b := l.free[n-1]
		l.free = l.free[:n-1]
		l.mu.Unlock()
		return b
	}
	l.mu.Unlock()
	b, err := unix.Mmap(-1, 0, l.size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return make([]byte, l.size)
	}
	return b
}

// Put gives back a buffer of Get (resliced or not), which the caller must
// not use any more: it is kept for the next Get, or unmapped if keep are
// kept already.
func (l *List) Put(b []byte) {
	b = b[:cap(b)]
	if len(b) != l.size {
		return
	}
	l.mu.Lock()
	if len(l.free) < l.keep {
		l.free = append(l.free, b)
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	// A heap buffer (a refused mapping) makes Munmap fail: dropped.
	_ = unix.Munmap(b)
}

// Kept returns how many buffers the List keeps now.
func (l *List) Kept() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.free)
}
