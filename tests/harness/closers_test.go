package harness

import (
	"slices"
	"testing"
)

// TestClosersDeferredEarly guards against a value receiver on Close: it is
// deferred after the first Add, and must still run what is added later,
// last added first.
func TestClosersDeferredEarly(t *testing.T) {
	var ran []int
	func() {
		var stop Closers
		stop.Add(func() error { ran = append(ran, 1); return nil })
		defer stop.Close()
		stop.Add(func() error { ran = append(ran, 2); return nil })
		stop.Add(func() error { ran = append(ran, 3); return nil })
	}()
	if want := []int{3, 2, 1}; !slices.Equal(ran, want) {
		t.Fatalf("ran %v, want %v", ran, want)
	}
}
