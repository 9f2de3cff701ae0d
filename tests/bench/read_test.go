package main

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResidentPercent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	// Just written: every page is in the page cache.
	got, err := residentPercent(p)
	if err != nil {
		t.Fatal(err)
	}
	if got != 100 {
		t.Fatalf("residentPercent of a file just written = %v, want 100", got)
	}
}

func TestTimedReadChecksBytes(t *testing.T) {
	dir := t.TempDir()
	data := []byte(strings.Repeat("lazyfs", 1000))
	want := sha256.Sum256(data)
	for _, tc := range []struct {
		name    string
		content []byte
		wantErr string
	}{
		{"right bytes", data, ""},
		{"one byte flipped", append([]byte{'L'}, data[1:]...), "wrong bytes: sha256"},
		{"short", data[:len(data)-1], "wrong bytes"},
		{"long", append(append([]byte{}, data...), 'x'), "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.WriteFile(p, tc.content, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := timedRead(t.Context(), p, make([]byte, len(data)), want)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
