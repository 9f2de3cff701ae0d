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
// Once no buffer was asked for a while, ReleaseIdle hands even those back:
// a node runs a worker per image, most of them idle most of the time.
package mmapbuf

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// lists are every List made, for ReleaseIdle.
var (
	listsMu sync.Mutex
	lists   []*List
)

// List hands out buffers of one size and keeps at most keep of those given
// back. It is safe for concurrent use.
type List struct {
	size, keep int
	lastGet    atomic.Int64 // unix nanoseconds of the last Get

	mu   sync.Mutex
	free [][]byte
}

// New returns a List of buffers of size bytes keeping at most keep.
func New(size, keep int) *List {
	l := &List{size: size, keep: keep}
	listsMu.Lock()
	lists = append(lists, l)
	listsMu.Unlock()
	return l
}

// Size is the size of the List's buffers.
func (l *List) Size() int { return l.size }

// Get returns a buffer of Size bytes (its contents are whatever the last
// user left). If the kernel refuses a mapping, the buffer comes from the
// heap instead, and Put drops it.
func (l *List) Get() []byte {
	l.lastGet.Store(time.Now().UnixNano())
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

// releaseIdle unmaps the buffers l keeps if no Get came in the last idle,
// and returns how many.
func (l *List) releaseIdle(idle time.Duration, now time.Time) int {
	if now.Sub(time.Unix(0, l.lastGet.Load())) < idle {
		return 0
	}
	l.mu.Lock()
	free := l.free
	l.free = nil
	l.mu.Unlock()
	for _, b := range free {
		_ = unix.Munmap(b)
	}
	return len(free)
}

// ReleaseIdle unmaps the buffers kept by every List that handed out none
// in the last idle, and returns how many: a process that stopped reading
// gives their pages back to the kernel. A List in use keeps its buffers.
func ReleaseIdle(idle time.Duration) int {
	listsMu.Lock()
	ls := lists
	listsMu.Unlock()
	now, n := time.Now(), 0
	for _, l := range ls {
		n += l.releaseIdle(idle, now)
	}
	return n
}
