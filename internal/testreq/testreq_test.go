package testreq

import (
	"testing"
)

// recorder is a testing.TB that records Fatal and Skip instead of ending
// the goroutine, so one test can observe what require decides.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()           {}
func (r *recorder) Fatal(args ...any) { r.fatal = args[0].(string) }
func (r *recorder) Skip(args ...any)  { r.skip = args[0].(string) }

func TestRequire(t *testing.T) {
	for _, tc := range []struct {
		name        string
		ci          string
		missing     []string
		fatal, skip string
	}{
		{"nothing missing", "true", nil, "", ""},
		{"developer machine skips", "", []string{"root"}, "", "test needs root"},
		{"CI other than true skips", "1", []string{"root"}, "", "test needs root"},
		{"CI=true fails", "true", []string{"root", "/dev/fuse"}, "test needs root and /dev/fuse", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			r := &recorder{TB: t}
			require(r, tc.missing)
			if r.fatal != tc.fatal || r.skip != tc.skip {
				t.Errorf("Fatal(%q) Skip(%q), want Fatal(%q) Skip(%q)", r.fatal, r.skip, tc.fatal, tc.skip)
			}
		})
	}
}
