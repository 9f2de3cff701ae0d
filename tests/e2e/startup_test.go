package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// TestStartRefusesUnusableWorkerBinary starts the snapshotter with a
// workers.binary that does not exist, and with one that is not executable:
// it must exit at start-up with an error naming workers.binary and the
// file, instead of starting and failing at the first lazy pull (issue 10).
func TestStartRefusesUnusableWorkerBinary(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "lazyfsd-not-executable")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, binary, says string }{
		{"missing", filepath.Join(dir, "no-such-lazyfsd"), "no such file"},
		{"not executable", plain, "not executable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap, err := harness.StartSnapshotter(context.Background(), harness.SnapshotterOptions{
				Env:    env,
				Config: map[string]any{"workers": map[string]any{"binary": tc.binary}},
			})
			if err == nil {
				snap.Close()
				t.Fatalf("snapshotter started with workers.binary %s", tc.binary)
			}
			msg := err.Error()
			if !strings.Contains(msg, "exited") || !strings.Contains(msg, "workers.binary") ||
				!strings.Contains(msg, tc.binary) || !strings.Contains(msg, tc.says) {
				t.Errorf("start with workers.binary %s: %v; want an exit whose error names workers.binary, the file and %q", tc.binary, err, tc.says)
			}
		})
	}
}
