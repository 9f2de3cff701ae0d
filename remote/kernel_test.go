package remote

import (
	"os"
	"path/filepath"
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

// TestKernelRequestTimeout reads the kernel's FUSE request timeouts: the
// smallest one set wins, and 0 (none), a negative or garbled value, or a
// missing file sets none.
func TestKernelRequestTimeout(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	saved := fuseTimeoutFiles
	t.Cleanup(func() { fuseTimeoutFiles = saved })
	for _, tc := range []struct {
		name  string
		files []string
		want  time.Duration
	}{
		{"none set", []string{file("a", "0\n"), file("b", "0\n")}, 0},
		{"default only", []string{file("c", "30\n"), file("d", "0\n")}, 30 * time.Second},
		{"max only", []string{file("e", "0\n"), file("f", "45\n")}, 45 * time.Second},
		{"the smaller wins", []string{file("g", "30\n"), file("h", "20\n")}, 20 * time.Second},
		{"negative and garbled", []string{file("i", "30\n"), file("j", "-5\n"), file("k", "x\n")}, 30 * time.Second},
		{"missing files", []string{filepath.Join(dir, "missing"), file("l", "12")}, 12 * time.Second},
	} {
		fuseTimeoutFiles = tc.files
		if got := KernelRequestTimeout(); got != tc.want {
			t.Errorf("%s: KernelRequestTimeout = %v, want %v", tc.name, got, tc.want)
		}
	}
}
