package labels

import (
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestChainID pins the relation a proof checks: a base layer's chain ID is
// its DiffID; above it, sha256 of "<parent chain ID> <DiffID>".
func TestChainID(t *testing.T) {
	base := digest.FromString("base tar")
	top := digest.FromString("top tar")
	if got := ChainID("", base); got != base {
		t.Errorf("base layer: %s, want its DiffID %s", got, base)
	}
	want := digest.FromString(base.String() + " " + top.String())
	if got := ChainID(base, top); got != want {
		t.Errorf("layer on a parent: %s, want %s", got, want)
	}
}
