package doubling

import "testing"

// TestAppendDoubles pins the growth: a full slice's capacity doubles (from
// minCap), never by less, and the elements are kept in order.
func TestAppendDoubles(t *testing.T) {
	var s []int
	caps := []int{}
	for i := range 5000 {
		before := cap(s)
		s = Append(s, i)
		if cap(s) != before {
			caps = append(caps, cap(s))
		}
	}
	want := []int{256, 512, 1024, 2048, 4096, 8192}
	if len(caps) != len(want) {
		t.Fatalf("capacities %v, want %v", caps, want)
	}
	for i := range want {
		if caps[i] != want[i] {
			t.Fatalf("capacities %v, want %v", caps, want)
		}
	}
	for i, v := range s {
		if v != i {
			t.Fatalf("s[%d] = %d", i, v)
		}
	}
	// A slice with room is appended to in place.
	r := make([]int, 1, 10)
	if got := Append(r, 7); &got[0] != &r[0] || got[1] != 7 {
		t.Error("a slice with room was copied")
	}
}
