package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// A workers.binary that cannot run fails the start, naming the key.
func TestWorkerBinaryChecked(t *testing.T) {
	dir := t.TempDir()
	exe, plain := filepath.Join(dir, "lazyfsd"), filepath.Join(dir, "plain")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"executable", exe, ""},
		{"missing", filepath.Join(dir, "nope"), "no such file"},
		{"a directory", dir, "not a regular file"},
		{"not executable", plain, "not executable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := workerBinary(tc.path)
			if tc.want == "" {
				if err != nil || got != tc.path {
					t.Fatalf("workerBinary(%s) = %q, %v; want it back", tc.path, got, err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), "workers.binary: ") || !strings.Contains(err.Error(), tc.want) || !errdefs.IsInvalidArgument(err) {
				t.Errorf("workerBinary(%s): %v; want an invalid-argument error naming workers.binary and %q", tc.path, err, tc.want)
			}
		})
	}
}
