package testreq

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that records Fatal and Skip instead of ending
// the goroutine, so one test can observe what Require decides.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()           {}
func (r *recorder) Name() string      { return "TestX" }
func (r *recorder) Fatal(args ...any) { r.fatal = args[0].(string) }
func (r *recorder) Skip(args ...any)  { r.skip = args[0].(string) }

func TestRequire(t *testing.T) {
	for _, tc := range []struct {
		name     string
		allow    string
		missing  error
		fatal    bool
		skip     bool
		logged   string
		exitCode int
	}{
		{name: "nothing missing", missing: nil},
		{name: "missing fails by default", missing: errors.New("root"), fatal: true, exitCode: 1},
		{name: "CI has no say", allow: "", missing: errors.New("root"), fatal: true, exitCode: 1},
		{name: "a value other than 1 does not allow", allow: "true", missing: errors.New("root"), fatal: true, exitCode: 1},
		{name: "LAZYFS_ALLOW_SKIP=1 skips and records", allow: "1", missing: errors.New("/dev/fuse"), skip: true, logged: "skip\ttestreq.test.TestX\t/dev/fuse\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "skips")
			t.Setenv(AllowSkipEnv, tc.allow)
			t.Setenv(LogEnv, log)
			t.Setenv("CI", "true")
			r := &recorder{TB: t}
			Require(r, tc.missing)
			if (r.fatal != "") != tc.fatal || (r.skip != "") != tc.skip {
				t.Fatalf("Fatal(%q) Skip(%q), want fatal %v skip %v", r.fatal, r.skip, tc.fatal, tc.skip)
			}
			if tc.missing != nil && !strings.Contains(r.fatal+r.skip, tc.missing.Error()) {
				t.Errorf("message %q does not name %q", r.fatal+r.skip, tc.missing)
			}
			got, _ := os.ReadFile(log)
			// Inside a test binary os.Args[0] ends in testreq.test.
			want := strings.ReplaceAll(tc.logged, "testreq.test.", "testreq.")
			if string(got) != want {
				t.Errorf("skip log %q, want %q", got, want)
			}
			if code := RequireMain(tc.missing); code != tc.exitCode {
				t.Errorf("RequireMain exit code %d, want %d", code, tc.exitCode)
			}
		})
	}
}

// TestRequireKernelRecordsFact guards the summary's kernel line: the fact is
// recorded whether the feature is there or not.
func TestRequireKernelRecordsFact(t *testing.T) {
	log := filepath.Join(t.TempDir(), "skips")
	t.Setenv(LogEnv, log)
	t.Setenv(AllowSkipEnv, "")
	r := &recorder{TB: t}
	RequireKernel(r, "FUSE_NOTIFY_RESEND", true)
	RequireKernel(r, "FUSE_NOTIFY_RESEND", false)
	if r.fatal == "" || !strings.Contains(r.fatal, "FUSE_NOTIFY_RESEND") {
		t.Errorf("a missing kernel feature gave Fatal(%q), want a failure naming it", r.fatal)
	}
	got, _ := os.ReadFile(log)
	want := "fact\ttestreq.TestX\tkernel feature FUSE_NOTIFY_RESEND: present\n" +
		"fact\ttestreq.TestX\tkernel feature FUSE_NOTIFY_RESEND: missing\n"
	if string(got) != want {
		t.Errorf("log %q, want %q", got, want)
	}
}
