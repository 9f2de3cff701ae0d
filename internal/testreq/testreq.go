// Package testreq names what a test needs from the machine it runs on, in
// one place for every package and suite.
//
// A missing requirement (root, /dev/fuse, a tool, a built binary, a kernel
// feature) fails the test and names what is missing: a machine that cannot
// run a test must not pass it. Only a person may trade that for a skip, by
// setting LAZYFS_ALLOW_SKIP=1 (CI never does). Every skip is then appended to
// the file $LAZYFS_SKIP_LOG names, and `make test` prints them all in one
// summary line at the end, so a skipped suite is never missed in the scroll.
package testreq

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	// AllowSkipEnv, set to 1, turns a missing requirement into a skip.
	AllowSkipEnv = "LAZYFS_ALLOW_SKIP"
	// LogEnv names the file skips and kernel facts are appended to
	// (scripts/test-summary.sh reads it); unset, nothing is recorded.
	LogEnv = "LAZYFS_SKIP_LOG"
)

// SkipAllowed reports whether a person asked for skips instead of failures.
func SkipAllowed() bool { return os.Getenv(AllowSkipEnv) == "1" }

// Require fails t, naming the requirement, when missing is not nil; with
// LAZYFS_ALLOW_SKIP=1 it records the skip and skips t instead.
func Require(t testing.TB, missing error) {
	t.Helper()
	if missing == nil {
		return
	}
	msg := "requirement not met: " + missing.Error()
	if !SkipAllowed() {
		t.Fatal(msg + " (set " + AllowSkipEnv + "=1 to skip instead)")
		return // a recorder in tests returns from Fatal
	}
	record("skip", suite(t.Name()), missing.Error())
	t.Skip(msg)
}

// RequireMain is Require for a TestMain, where a whole suite needs what is
// missing: it returns the exit code the test binary must end with, 0 when
// nothing is missing or a skip is allowed (and recorded), 1 otherwise.
func RequireMain(missing error) int {
	if missing == nil {
		return 0
	}
	name := suite("")
	if !SkipAllowed() {
		fmt.Fprintf(os.Stderr, "FAIL: %s: requirement not met: %v (set %s=1 to skip instead)\n", name, missing, AllowSkipEnv)
		return 1
	}
	record("skip", name, missing.Error())
	fmt.Fprintf(os.Stderr, "SKIP: %s: requirement not met: %v\n", name, missing)
	return 0
}

// RequireRoot needs root (mount(2), containerd, runc).
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, CheckRoot())
}

// RequireFUSE needs root and a usable /dev/fuse.
func RequireFUSE(t testing.TB) {
	t.Helper()
	Require(t, errors.Join(CheckRoot(), CheckFUSE()))
}

// RequireKernel needs a kernel feature. Whether the kernel has it is a fact
// worth seeing even when it does, so it is recorded either way.
func RequireKernel(t testing.TB, feature string, present bool) {
	t.Helper()
	state := "present"
	if !present {
		state = "missing"
	}
	record("fact", suite(t.Name()), "kernel feature "+feature+": "+state)
	if !present {
		Require(t, fmt.Errorf("the kernel lacks %s", feature))
	}
}

// CheckRoot reports an error unless the process runs as root.
func CheckRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("root (running as uid " + fmt.Sprint(os.Geteuid()) + ")")
	}
	return nil
}

// CheckFUSE reports an error unless /dev/fuse can be opened for mounting.
func CheckFUSE() error {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("a usable /dev/fuse: %w", err)
	}
	return f.Close()
}

// suite names a test for the summary: the test binary's package plus the
// test, e.g. "snapshot.TestConformance".
func suite(test string) string {
	pkg := strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
	if test == "" {
		return pkg
	}
	return pkg + "." + test
}

// record appends one line, "kind<TAB>suite<TAB>text", to $LAZYFS_SKIP_LOG.
// One write per line with O_APPEND: test binaries of several packages run
// at once and their lines must not interleave.
func record(kind, suite, text string) {
	path := os.Getenv(LogEnv)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testreq: cannot record %s of %s in %s: %v\n", kind, suite, path, err)
		return
	}
	defer f.Close()
	line := kind + "\t" + suite + "\t" + strings.ReplaceAll(text, "\n", " ") + "\n"
	if _, err := f.WriteString(line); err != nil {
		fmt.Fprintf(os.Stderr, "testreq: cannot record %s of %s in %s: %v\n", kind, suite, path, err)
	}
}
