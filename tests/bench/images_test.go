package main

import (
	"path"
	"testing"
)

func TestManyEntryLayer(t *testing.T) {
	for _, entries := range []int{600, 3001, 300_000} {
		l := manyEntryLayer(entries)
		if len(l) != entries {
			t.Fatalf("manyEntryLayer(%d) has %d entries", entries, len(l))
		}
		seen := map[string]bool{}
		dirs := 0
		for _, f := range l {
			if seen[f.Path] {
				t.Fatalf("manyEntryLayer(%d): duplicate %s", entries, f.Path)
			}
			seen[f.Path] = true
			if f.Mode.IsDir() {
				dirs++
			} else if len(f.Content) == 0 || !seen[path.Dir(f.Path)] {
				t.Fatalf("manyEntryLayer(%d): %s is empty or comes before its directory", entries, f.Path)
			}
		}
		if dirs != manyDirs {
			t.Fatalf("manyEntryLayer(%d) has %d dirs, want %d", entries, dirs, manyDirs)
		}
	}
}
