package ctl

import (
	"strings"
	"testing"
)

// TestOptimizeRefusesBeforeWork: command-line mistakes and a DST that
// cannot be pushed are refused before anything is pulled or run (no
// containerd answers here: reaching it would be a different error).
func TestOptimizeRefusesBeforeWork(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"one argument", []string{"image", "optimize", "a/b:c"}, exitUsage, "expected SRC and DST"},
		{"run-for zero", []string{"image", "optimize", "--run-for", "0s", "a/b:c", "a/b:d"}, exitUsage, "--run-for must be positive"},
		{"unpushable DST", []string{"image", "optimize", "--push", "a/b:c", "Bad Ref", "--", "true"}, exitError, "cannot push"},
	} {
		code, _, stderr := runCLI(t, append(tc.args, "--address", "/nonexistent/containerd.sock")...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tc.name, code, stderr, tc.code, tc.want)
		}
	}
}
