package snapshot

import (
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/labels"
)

// fakeCached reports fixed cached bytes per layer.
type fakeCached map[digest.Digest][2]int64

func (f fakeCached) CachedBytes(layer digest.Digest) (int64, int64, bool) {
	u, ok := f[layer]
	return u[0], u[1], ok
}

// TestUsageOfRemoteSnapshot: a remote snapshot reports its layer's cached
// bytes; other snapshots are measured as before.
func TestUsageOfRemoteSnapshot(t *testing.T) {
	ctx := testContext(t)
	lbls := lazyLabels("chain1")
	layer := digest.Digest(lbls[labels.LayerDigest])
	cached := fakeCached{layer: {12345, 3}}
	s, err := New(ctx, t.TempDir(), WithRemoteLayers(newFakeRemote()), WithCachedLayers(cached), noBackgroundProofs)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Prepare(ctx, "extract chain1", "", snapshots.WithLabels(lbls)); err == nil {
		t.Fatal("Prepare of a lazy layer succeeded, want already exists")
	}
	u, err := s.Usage(ctx, "chain1")
	if err != nil {
		t.Fatal(err)
	}
	if u.Size != 12345 || u.Inodes != 3 {
		t.Errorf("Usage of the remote snapshot = %+v, want 12345 bytes in 3 inodes", u)
	}

	// Nothing cached yet: 0, not an error.
	delete(cached, layer)
	if u, err := s.Usage(ctx, "chain1"); err != nil || u.Size != 0 {
		t.Errorf("Usage with nothing cached = %+v, %v; want 0", u, err)
	}

	// A container on top is its own upper dir only.
	cached[layer] = [2]int64{12345, 3}
	if _, err := s.Prepare(ctx, "container", "chain1"); err != nil {
		t.Fatal(err)
	}
	if u, err := s.Usage(ctx, "container"); err != nil || u.Size >= 12345 {
		t.Errorf("Usage of the container's snapshot = %+v, %v; want its upper dir only", u, err)
	}
}
