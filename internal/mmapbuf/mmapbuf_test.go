package mmapbuf

import (
	"testing"
	"time"
)

// TestKeepBound pins the bound at its edge: keep buffers given back are
// kept, one more is unmapped; a buffer of another size is never kept.
func TestKeepBound(t *testing.T) {
	l := New(1<<20, 2)
	a, b, c := l.Get(), l.Get(), l.Get()
	for _, buf := range [][]byte{a, b, c} {
		if len(buf) != 1<<20 {
			t.Fatalf("Get returned %d bytes, want %d", len(buf), 1<<20)
		}
		buf[len(buf)-1] = 1 // writable to its end
	}
	l.Put(a[:10]) // resliced: still the List's
	l.Put(b)
	if got := l.Kept(); got != 2 {
		t.Fatalf("kept %d after giving back 2, want 2", got)
	}
	l.Put(c)
	if got := l.Kept(); got != 2 {
		t.Errorf("kept %d after giving back 3 with keep 2, want 2", got)
	}
	l.Put(make([]byte, 10))
	if got := l.Kept(); got != 2 {
		t.Errorf("kept %d after a foreign buffer, want 2", got)
	}
	if d := l.Get(); len(d) != 1<<20 || l.Kept() != 1 {
		t.Errorf("Get after Put: %d bytes, %d kept; want a kept buffer reused", len(d), l.Kept())
	}
	empty := New(4096, 0)
	empty.Put(empty.Get())
	if empty.Kept() != 0 {
		t.Error("a List with keep 0 kept a buffer")
	}
}

// TestReleaseIdle: a List that handed out no buffer for idle gives back
// what it keeps; one asked for a buffer within idle keeps them.
func TestReleaseIdle(t *testing.T) {
	l := New(4096, 2)
	a, b := l.Get(), l.Get()
	l.Put(a)
	l.Put(b)
	got := l.Get() // the last Get, now
	l.Put(got)
	if n := l.releaseIdle(time.Minute, time.Now()); n != 0 || l.Kept() != 2 {
		t.Fatalf("released %d (kept %d) within a minute of a Get, want 0 (2)", n, l.Kept())
	}
	if n := l.releaseIdle(time.Minute, time.Now().Add(time.Minute)); n != 2 || l.Kept() != 0 {
		t.Fatalf("released %d (kept %d) a minute after the last Get, want 2 (0)", n, l.Kept())
	}
	buf := l.Get()
	if len(buf) != 4096 {
		t.Fatalf("Get after a release: %d bytes", len(buf))
	}
	l.Put(buf)
	// Every List: with no idle time asked for, each gives back all it keeps.
	if n := ReleaseIdle(0); n < 1 || l.Kept() != 0 {
		t.Errorf("ReleaseIdle(0) released %d, %d kept; want at least 1, 0 kept", n, l.Kept())
	}
}
