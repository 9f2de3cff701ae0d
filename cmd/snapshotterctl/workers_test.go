package main

import (
	"slices"
	"testing"
)

func TestCompareMountIDs(t *testing.T) {
	ids := []string{"10", "b", "2", "a", "1", "02x"}
	slices.SortFunc(ids, compareMountIDs)
	if want := []string{"1", "2", "10", "02x", "a", "b"}; !slices.Equal(ids, want) {
		t.Errorf("sorted %q, want %q", ids, want)
	}
}
