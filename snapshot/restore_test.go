package snapshot

import (
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/labels"
)

// TestRestoreRemountsRemoteSnapshotsOnly: after a restart, Restore hands
// the remote layers exactly the lazily mounted snapshots, each with its own
// layer and mountpoint, and none of the ordinary ones (a container's
// rootfs, an unpacked layer, a view).
func TestRestoreRemountsRemoteSnapshotsOnly(t *testing.T) {
	ctx := testContext(t)
	s, fr := newLazySnapshotter(t, ctx)

	// Two lazy layers, stacked, with other blobs.
	chain1, chain2 := digest.FromString("chain1").String(), digest.FromString("chain2").String()
	l1 := lazyLabels(chain1)
	l2 := lazyLabels(chain2)
	l2[labels.LayerDigest] = "sha256:4444444444444444444444444444444444444444444444444444444444444444"
	if _, err := s.Prepare(ctx, "extract-1 chain1", "", snapshots.WithLabels(l1)); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare chain1: %v", err)
	}
	if _, err := s.Prepare(ctx, "extract-2 chain2", chain1, snapshots.WithLabels(l2)); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare chain2: %v", err)
	}
	// An ordinary layer, a container and a view on top.
	if _, err := s.Prepare(ctx, "extract-3 plain", chain2); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "plain", "extract-3 plain"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(ctx, "container", "plain"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.View(ctx, "view", "plain"); err != nil {
		t.Fatal(err)
	}
	fr.mu.Lock()
	want := maps.Clone(fr.layers) // by id, what each Mount got
	mountpoints := maps.Clone(fr.mounted)
	fr.mu.Unlock()
	if len(want) != 2 {
		t.Fatalf("mounted %v, want two lazy layers", want)
	}

	// What the new process does at start. Restore calls the remote layers
	// before it returns.
	if err := s.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(fr.restored) > 0 {
		got = append(got, <-fr.restored)
	}
	slices.Sort(got)
	if wantIDs := slices.Sorted(maps.Keys(want)); !slices.Equal(got, wantIDs) {
		t.Fatalf("restored %v, want exactly the lazy layers %v", got, wantIDs)
	}
	fr.mu.Lock()
	defer fr.mu.Unlock()
	for id, l := range want {
		if !reflect.DeepEqual(fr.layers[id], l) {
			t.Errorf("snapshot %s restored with layer %+v, want %+v", id, fr.layers[id], l)
		}
		if mountpoints[id] != s.upperPath(id) {
			t.Errorf("snapshot %s mounted at %s, want %s", id, mountpoints[id], s.upperPath(id))
		}
	}
}
