package main

import (
	"slices"
	"testing"
)

// TestClosersDeferredEarly guards against a value receiver on closeAll: it
// is deferred after the first add, and must still run what is added later,
// last added first.
func TestClosersDeferredEarly(t *testing.T) {
	var ran []int
	func() {
		var stop closers
		stop.add(func() error { ran = append(ran, 1); return nil })
		defer stop.closeAll()
		stop.add(func() error { ran = append(ran, 2); return nil })
		stop.add(func() error { ran = append(ran, 3); return nil })
	}()
	if want := []int{3, 2, 1}; !slices.Equal(ran, want) {
		t.Fatalf("ran %v, want %v", ran, want)
	}
}
