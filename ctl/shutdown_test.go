package ctl

import (
	"slices"
	"strings"
	"testing"
)

func TestShutdown(t *testing.T) {
	for _, tc := range []struct {
		args []string
		all  bool
		out  string
	}{
		{[]string{"shutdown"}, false, "layers in use stay served"},
		{[]string{"shutdown", "--unmount-all"}, true, "every lazy layer detached"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			f := newSnapshotterFixture(t)
			code, stdout, stderr := runCLI(t, f.args(tc.args...)...)
			if code != exitOK || !strings.Contains(stdout, tc.out) {
				t.Fatalf("exit status %d\n%s%s", code, stdout, stderr)
			}
			f.fake.mu.Lock()
			defer f.fake.mu.Unlock()
			if !slices.Equal(f.fake.shutdowns, []bool{tc.all}) {
				t.Errorf("shutdown requests %v, want [%v]", f.fake.shutdowns, tc.all)
			}
		})
	}
	f := newSnapshotterFixture(t)
	if code, _, _ := runCLI(t, f.args("shutdown", "extra")...); code != exitUsage {
		t.Errorf("shutdown with an argument: exit %d, want %d", code, exitUsage)
	}
}
