// Package testreq names what a test needs from the machine it runs on. A
// missing requirement skips the test on a developer machine and fails it
// under CI=true, where it means a broken runner rather than a reason to pass.
package testreq

import (
	"os"
	"strings"
	"testing"
)

// RequireFUSE stops a test that mounts: it needs root and /dev/fuse.
func RequireFUSE(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		missing = append(missing, "/dev/fuse")
	}
	require(t, missing)
}

// require skips or, under CI=true, fails t when anything is missing.
func require(t testing.TB, missing []string) {
	t.Helper()
	if len(missing) == 0 {
		return
	}
	msg := "test needs " + strings.Join(missing, " and ")
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	} else {
		t.Skip(msg)
	}
}
