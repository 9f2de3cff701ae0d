package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/labels"
)

// TestContainerGateProofError: a proof a container must wait for that
// cannot be made (the registry is down) refuses the container, clearly;
// it never lets it start on an unproven layer.
func TestContainerGateProofError(t *testing.T) {
	e := newProofEnv(t, WithVerify(VerifyBeforeUse, 0))
	e.mountLazily(t, "extract-1", "", layerLabels(realDiffID, honestBlob, "reg/a:1"), realDiffID)
	e.fail = errors.New("registry down")
	close(e.release)
	err := receive(t, e.containerAsync(t, "c1", realDiffID.String()), "container Prepare")
	if err == nil || !strings.Contains(err.Error(), "could not be proven") {
		t.Fatalf("container Prepare on a layer whose proof failed: %v, want a refusal", err)
	}
	if _, err := e.s.Stat(testContext(t), "c1"); !errdefs.IsNotFound(err) {
		t.Fatalf("the refused Prepare left its snapshot: %v", err)
	}
}

// TestProofOfARemovedSnapshot: a snapshot removed while its proof runs
// gets no verdict: the proof reports that it could not record one, and
// tells no worker anything.
func TestProofOfARemovedSnapshot(t *testing.T) {
	e := newProofEnv(t, WithVerify(VerifyBeforeUse, 0))
	e.mountLazily(t, "extract-1", "", layerLabels(realDiffID, honestBlob, "reg/a:1"), realDiffID)
	c := e.s.prove(testContext(t), realDiffID.String(), "reg/a:1")
	receive(t, e.started, "the proof")
	if err := e.s.Remove(testContext(t), realDiffID.String()); err != nil {
		t.Fatal(err)
	}
	close(e.release)
	receive(t, c.done, "the proof's end")
	if c.res.err == nil {
		t.Fatalf("proof of a removed snapshot: %+v, want an error", c.res)
	}
	if len(e.fr.verdicts) != 0 {
		t.Fatalf("verdicts told for a removed snapshot: %v", e.fr.verdicts)
	}
}

// TestProvenSnapshotIsNotProvenAgain: a proof asked for a snapshot whose
// outcome is recorded already answers from its labels, without fetching
// the blob again.
func TestProvenSnapshotIsNotProvenAgain(t *testing.T) {
	e := newProofEnv(t, WithVerify(VerifyBeforeUse, 0))
	e.mountLazily(t, "extract-1", "", layerLabels(realDiffID, honestBlob, "reg/a:1"), realDiffID)
	if err := e.s.recordProof(testContext(t), realDiffID.String(), proof{diffID: realDiffID}); err != nil {
		t.Fatal(err)
	}
	c := e.s.prove(testContext(t), realDiffID.String(), "reg/a:1")
	receive(t, c.done, "the proof's end")
	if c.res.err != nil || c.res.forged || c.res.diffID != realDiffID || e.fr.verifies != 0 {
		t.Fatalf("proof of a proven snapshot: %+v after %d fetches, want its recorded verdict and none", c.res, e.fr.verifies)
	}
}

// TestMountsWaitsForRemountedParents: Mounts of a container whose lazily
// loaded parent is being mounted again fails (unavailable) rather than
// hand out an overlay on an empty lower dir.
func TestMountsWaitsForRemountedParents(t *testing.T) {
	ctx := testContext(t)
	s, fr := newLazySnapshotter(t, ctx)
	if _, err := s.Prepare(ctx, "extract-1 chain1", "", snapshots.WithLabels(lazyLabels("chain1"))); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare of a lazy layer: %v", err)
	}
	if _, err := s.Prepare(ctx, "container", "chain1"); err != nil {
		t.Fatal(err)
	}
	fr.mu.Lock()
	for id := range fr.mounted {
		fr.pending = map[string]bool{id: true}
	}
	fr.mu.Unlock()
	if _, err := s.Mounts(ctx, "container"); !errdefs.IsUnavailable(err) {
		t.Fatalf("Mounts on a parent being mounted again: %v, want unavailable", err)
	}
}

// TestUsageOfAFallenBackLayer: a layer that fell back to an ordinary
// unpack keeps its lazy labels, but its usage is its own directory's, not
// what the chunk cache holds of that layer.
func TestUsageOfAFallenBackLayer(t *testing.T) {
	ctx := testContext(t)
	lbls := lazyLabels("chain1")
	fr := newFakeRemote()
	fr.failMount = errors.New("worker refused the layer")
	s, err := New(ctx, t.TempDir(), WithRemoteLayers(fr), WithCachedLayers(fakeCached{digest.Digest(lbls[labels.LayerDigest]): {1 << 30, 3}}), noBackgroundProofs)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Prepare(ctx, "extract chain1", "", snapshots.WithLabels(lbls)); err != nil {
		t.Fatalf("fallback Prepare: %v", err)
	}
	if err := s.Commit(ctx, "chain1", "extract chain1", snapshots.WithLabels(lbls)); err != nil {
		t.Fatal(err)
	}
	u, err := s.Usage(ctx, "chain1")
	if err != nil {
		t.Fatal(err)
	}
	if u.Size >= 1<<30 {
		t.Fatalf("usage of an ordinary layer %+v counts the chunk cache's bytes", u)
	}
}

// TestRemoveDetachesMountsBelow guards removeDir: whatever is still mounted
// below a snapshot's directory (a stale FUSE mount of a dead worker) is
// detached before the directory is removed; removal never walks into it
// nor leaves the directory behind.
func TestRemoveDetachesMountsBelow(t *testing.T) {
	ctx := testContext(t)
	s, err := New(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m, err := s.Prepare(ctx, "a", "")
	if err != nil {
		t.Fatal(err)
	}
	fsDir := m[0].Source
	if err := unix.Mount("tmpfs", fsDir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(fsDir, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(fsDir, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(fsDir)); err != nil || len(mounts) != 0 {
		t.Fatalf("mounts left at %s: %v, %v", fsDir, mounts, err)
	}
	if _, err := os.Stat(filepath.Dir(fsDir)); !os.IsNotExist(err) {
		t.Fatalf("snapshot dir after Remove: %v, want it gone", err)
	}
}

// TestRelativeRootRefused: a relative root would put the snapshots
// wherever the snapshotter happens to run from.
func TestRelativeRootRefused(t *testing.T) {
	const rel = "lazyfs-relative-root"
	t.Cleanup(func() { os.RemoveAll(rel) })
	s, err := New(testContext(t), rel)
	if err == nil {
		s.Close()
		t.Fatal("New accepted a relative root")
	}
	if !strings.Contains(err.Error(), "absolute") {
		t.Fatalf("New with a relative root: %v, want it to say the root must be absolute", err)
	}
}
