package snapshot

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/labels"
	"github.com/lazyfs/lazyfs/layer"
)

// fakeRemote records calls; Mount fails when failMount is set.
type fakeRemote struct {
	mu        sync.Mutex
	failMount error
	mounted   map[string]string      // id -> mountpoint
	layers    map[string]layer.Layer // id -> the layer last mounted or restored
	unmounted []string
	restored  chan string
	pending   map[string]bool // ids Wait reports as not mounted yet
	waits     int             // calls of Wait with parents to check

	// verify answers Verify (nil: the test expects no proof); verifies
	// counts the calls; verdicts records SetVerdict by id.
	verify   func(ctx context.Context, id string) (layer.BlobDigests, error)
	verifies int
	verdicts map[string]verdict
	// onMount, if set, runs at the start of every Mount (without the
	// lock): a way to make another Prepare run in the middle of one.
	onMount func(id string)
	// verdictSet, if set, receives the id of each SetVerdict: the proof
	// has then recorded its outcome.
	verdictSet chan string
	// restoreErr, verdictErr, unmountErr: what Restore, SetVerdict and
	// Unmount answer (after recording the call).
	restoreErr, verdictErr, unmountErr error
}

type verdict struct {
	forged bool
	diffID digest.Digest
}

// newLazySnapshotter is a snapshotter whose lazy layers fr mounts, with
// no background proofs; it is closed when the test ends.
func newLazySnapshotter(t *testing.T, ctx context.Context) (*Snapshotter, *fakeRemote) {
	t.Helper()
	fr := newFakeRemote()
	s, err := New(ctx, t.TempDir(), WithRemoteLayers(fr), noBackgroundProofs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, fr
}

func newFakeRemote() *fakeRemote {
	return &fakeRemote{mounted: map[string]string{}, layers: map[string]layer.Layer{}, restored: make(chan string, 10), verdicts: map[string]verdict{}}
}

func (f *fakeRemote) Verify(ctx context.Context, id string) (layer.BlobDigests, error) {
	f.mu.Lock()
	f.verifies++
	verify := f.verify
	f.mu.Unlock()
	if verify == nil {
		return layer.BlobDigests{}, fmt.Errorf("unexpected proof of %s: %w", id, errdefs.ErrNotImplemented)
	}
	return verify(ctx, id)
}

func (f *fakeRemote) SetVerdict(_ context.Context, id string, forged bool, diffID digest.Digest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.verdicts[id] = verdict{forged, diffID}
	if f.verdictSet != nil {
		f.verdictSet <- id
	}
	return f.verdictErr
}

func (f *fakeRemote) Mount(_ context.Context, id, mountpoint string, l layer.Layer) error {
	if f.onMount != nil {
		f.onMount(id)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failMount != nil {
		return f.failMount
	}
	f.mounted[id] = mountpoint
	f.layers[id] = l
	return nil
}

func (f *fakeRemote) Unmount(_ context.Context, id, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unmounted = append(f.unmounted, id)
	delete(f.mounted, id)
	return f.unmountErr
}

func (f *fakeRemote) Restore(_ context.Context, id, _ string, l layer.Layer) error {
	f.mu.Lock()
	f.layers[id] = l
	err := f.restoreErr
	f.mu.Unlock()
	f.restored <- id
	return err
}

func (f *fakeRemote) Wait(_ context.Context, ids []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waits++
	for _, id := range ids {
		if f.pending[id] {
			return fmt.Errorf("layer %s still being mounted again: %w", id, errdefs.ErrUnavailable)
		}
	}
	return nil
}

func lazyLabels(chainID string) map[string]string {
	return map[string]string{
		labels.TargetSnapshotRef: chainID,
		labels.ImageRef:          "127.0.0.1:5000/img:v1",
		labels.LayerDigest:       "sha256:2222222222222222222222222222222222222222222222222222222222222222",
		labels.TOCDigest:         "sha256:3333333333333333333333333333333333333333333333333333333333333333",
	}
}

func TestPrepareRemote(t *testing.T) {
	ctx := testContext(t)
	root := t.TempDir()
	fr := newFakeRemote()
	s, err := New(ctx, root, WithRemoteLayers(fr), noBackgroundProofs)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	_, err = s.Prepare(ctx, "extract-1 chain1", "", snapshots.WithLabels(lazyLabels("chain1")))
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare of a lazy layer: %v, want already exists", err)
	}
	info, err := s.Stat(ctx, "chain1")
	if err != nil {
		t.Fatalf("committed remote snapshot not found by chain id: %v", err)
	}
	if info.Kind != snapshots.KindCommitted || info.Labels[labels.Remote] == "" || info.Labels[labels.TargetSnapshotRef] != "chain1" {
		t.Fatalf("remote snapshot info %+v", info)
	}
	if _, err := s.Stat(ctx, "extract-1 chain1"); !errdefs.IsNotFound(err) {
		t.Fatalf("the extraction key still exists: %v", err)
	}
	if len(fr.mounted) != 1 {
		t.Fatalf("mounted %v, want one mount", fr.mounted)
	}
	// The remote layers get the labels parsed, once, into a typed layer.
	wantLayer := layer.Layer{
		ImageRef:    "127.0.0.1:5000/img:v1",
		LayerDigest: "sha256:2222222222222222222222222222222222222222222222222222222222222222",
		TOCDigest:   "sha256:3333333333333333333333333333333333333333333333333333333333333333",
	}
	for id := range fr.mounted {
		if got := fr.layers[id]; !reflect.DeepEqual(got, wantLayer) {
			t.Fatalf("Mount got layer %+v, want %+v", got, wantLayer)
		}
	}

	// A second pull of the same layer finds it.
	if _, err := s.Prepare(ctx, "extract-2 chain1", "", snapshots.WithLabels(lazyLabels("chain1"))); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second Prepare: %v", err)
	}
	if len(fr.mounted) != 1 || fr.verifies != 0 {
		t.Fatalf("second Prepare of the same blob mounted again (%v) or proved it (%d times)", fr.mounted, fr.verifies)
	}

	// A container on top of it gets an overlay with the mount as lower dir.
	m, err := s.Prepare(ctx, "container", "chain1")
	if err != nil {
		t.Fatal(err)
	}
	var mp string
	for _, v := range fr.mounted {
		mp = v
	}
	if m[0].Type != "overlay" || !contains(m[0].Options, "lowerdir="+mp) {
		t.Fatalf("container mounts %+v, want an overlay on %s", m, mp)
	}

	// Restart: the remote snapshot is restored.
	if err := s.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-fr.restored:
		fr.mu.Lock()
		got := fr.layers[id]
		fr.mu.Unlock()
		if !reflect.DeepEqual(got, wantLayer) {
			t.Fatalf("Restore got layer %+v, want %+v (the committed snapshot's labels, parsed)", got, wantLayer)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("remote snapshot not restored")
	}

	if err := s.Remove(ctx, "container"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "chain1"); err != nil {
		t.Fatal(err)
	}
	if len(fr.unmounted) != 1 || len(fr.mounted) != 0 {
		t.Fatalf("after Remove: unmounted %v, still mounted %v", fr.unmounted, fr.mounted)
	}
}

func TestPrepareRemoteFallsBack(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		fail   error
	}{
		{"not estargz", func() map[string]string {
			l := lazyLabels("c")
			delete(l, labels.TOCDigest)
			return l
		}(), nil},
		{"worker refuses the layer", lazyLabels("c"), errors.New("toc digest mismatch")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			fr := newFakeRemote()
			fr.failMount = tc.fail
			s, err := New(ctx, t.TempDir(), WithRemoteLayers(fr), noBackgroundProofs)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			m, err := s.Prepare(ctx, "extract-1 c", "", snapshots.WithLabels(tc.labels))
			if err != nil {
				t.Fatalf("fallback Prepare: %v", err)
			}
			if len(m) != 1 || m[0].Type != "bind" {
				t.Fatalf("fallback mounts %+v, want the plain bind mount", m)
			}
			if err := s.Commit(ctx, "c", "extract-1 c"); err != nil {
				t.Fatal(err)
			}
			info, err := s.Stat(ctx, "c")
			if err != nil {
				t.Fatal(err)
			}
			if isRemote(info) {
				t.Fatal("a fallen back layer is labelled remote")
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestPrepareWaitsForRemountedParents guards against a container starting on
// an empty lower directory while its lazily loaded layer is mounted again
// after a restart: Prepare must fail (and leave no key behind) rather than
// hand out such mounts.
func TestPrepareWaitsForRemountedParents(t *testing.T) {
	ctx := testContext(t)
	s, fr := newLazySnapshotter(t, ctx)
	if _, err := s.Prepare(ctx, "extract-1 chain1", "", snapshots.WithLabels(lazyLabels("chain1"))); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare of a lazy layer: %v", err)
	}
	fr.mu.Lock()
	for id := range fr.mounted {
		fr.pending = map[string]bool{id: true}
	}
	fr.mu.Unlock()

	if _, err := s.Prepare(ctx, "container", "chain1"); !errdefs.IsUnavailable(err) {
		t.Fatalf("Prepare on a parent being mounted again: %v, want unavailable", err)
	}
	if _, err := s.Stat(ctx, "container"); !errdefs.IsNotFound(err) {
		t.Fatalf("the failed Prepare left its key: %v", err)
	}

	fr.mu.Lock()
	fr.pending = nil
	fr.mu.Unlock()
	if _, err := s.Prepare(ctx, "container", "chain1"); err != nil {
		t.Fatalf("Prepare once the parent is mounted: %v", err)
	}
}
