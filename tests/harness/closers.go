package harness

import (
	"fmt"
	"io"
	"os"
)

// Closers stop what a program (the demo, the benchmark) started, last
// started first. Tests use Track instead, which ties teardown to t.Cleanup.
type Closers []func() error

// Add registers f to run at Close.
func (c *Closers) Add(f func() error) { *c = append(*c, f) }

// Close runs the closers in reverse order, printing failures, and forgets
// them. Its receiver is a pointer because it is deferred right after the
// first Add: a value receiver would be copied at the defer statement and
// miss everything added later.
func (c *Closers) Close() {
	for i := len(*c) - 1; i >= 0; i-- {
		if err := (*c)[i](); err != nil {
			fmt.Fprintf(os.Stderr, "teardown: %v\n", err)
		}
	}
	*c = nil
}

// CheckProgram checks what a program needs to run lazyfs end to end: root,
// /dev/fuse, the tools of scripts/install-deps.sh and the given binaries.
func (e Env) CheckProgram(binaries ...string) error {
	for _, err := range []error{CheckRoot(), CheckFUSE(), e.CheckTools(), e.CheckBinaries(binaries...)} {
		if err != nil {
			return err
		}
	}
	return nil
}

// PrintLogs writes the end of each log file to w, for a program (the demo,
// the benchmark) that failed; tests get the same through Track.
func PrintLogs(w io.Writer, paths []string) {
	for _, p := range paths {
		fmt.Fprintf(w, "\n==== %s ====\n%s", p, logTail(p))
	}
}
