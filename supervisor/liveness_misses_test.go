package supervisor

import "testing"

// TestMissedChecks guards the hung-worker rule: one slow answer on a
// loaded node is not a hang, hungMisses misses in a row are, and an answer
// in between starts the count over.
func TestMissedChecks(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answered []bool
		want     []bool
	}{
		{"answers", []bool{true, true, true}, []bool{false, false, false}},
		{"one miss", []bool{false, true}, []bool{false, false}},
		{"two in a row", []bool{false, false}, []bool{false, true}},
		{"an answer between misses", []bool{false, true, false, true, false}, []bool{false, false, false, false, false}},
		{"misses after an answer", []bool{false, true, false, false}, []bool{false, false, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m missedChecks
			for i, answered := range tc.answered {
				if got := m.observe(answered); got != tc.want[i] {
					t.Fatalf("check %d (answered %v): hung = %v, want %v", i+1, answered, got, tc.want[i])
				}
			}
		})
	}
}
