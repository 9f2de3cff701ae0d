package worker

import "testing"

// TestMemoryLimit: the limit is the tier's budget plus the overhead, and
// follows a live heap that outgrows half of it (never below what GOGC
// allows, so that a big TOC does not make the collector run all the time).
func TestMemoryLimit(t *testing.T) {
	const budget = 16 << 20
	for _, tc := range []struct {
		live, want int64
	}{
		{0, budget + MemoryOverhead},
		{(budget + MemoryOverhead) / 2, budget + MemoryOverhead},
		{(budget+MemoryOverhead)/2 + 1, budget + MemoryOverhead + 2},
		{100 << 20, 200 << 20},
	} {
		if got := memoryLimit(budget, tc.live); got != tc.want {
			t.Errorf("memoryLimit(%d, %d) = %d, want %d", budget, tc.live, got, tc.want)
		}
	}
}
