package remote

import (
	"testing"
	"time"
)

func TestCapReadTimeout(t *testing.T) {
	for _, tc := range []struct {
		configured, kernel, want time.Duration
	}{
		{30 * time.Second, 0, 30 * time.Second},
		{30 * time.Second, 60 * time.Second, 30 * time.Second},
		{30 * time.Second, 33 * time.Second, 29700 * time.Millisecond}, // ceiling 33 - 3.3 s
		{30 * time.Second, 34 * time.Second, 30 * time.Second},         // ceiling 30.6 s
		{30 * time.Second, 20 * time.Second, 18 * time.Second},         // a tenth: 2 s
		{30 * time.Second, 5 * time.Second, 4 * time.Second},           // at least a second
		{30 * time.Second, time.Second, 500 * time.Millisecond},        // never 0
	} {
		if got := CapReadTimeout(tc.configured, tc.kernel); got != tc.want {
			t.Errorf("CapReadTimeout(%v, %v) = %v, want %v", tc.configured, tc.kernel, got, tc.want)
		}
	}
}
