package toc

import "testing"

// TestExpectedEntries pins the estimate a sink makes room by: one entry per
// bytesPerEntry bytes of JSON, never more than the limit, never negative.
func TestExpectedEntries(t *testing.T) {
	for _, tc := range []struct {
		size int64
		max  int
		want int
	}{
		{0, 100, 0},
		{-1, 100, 0},
		{bytesPerEntry - 1, 100, 0},
		{bytesPerEntry, 100, 1},
		{100 * bytesPerEntry, 100, 100},
		{101 * bytesPerEntry, 100, 100},
		{1 << 40, 1_000_000, 1_000_000},
	} {
		if got := expectedEntries(tc.size, tc.max); got != tc.want {
			t.Errorf("expectedEntries(%d, %d) = %d, want %d", tc.size, tc.max, got, tc.want)
		}
	}
}
