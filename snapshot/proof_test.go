package snapshot

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lazyfs/lazyfs/labels"
	"github.com/lazyfs/lazyfs/layer"
	"github.com/lazyfs/lazyfs/metrics"
)

// Two blobs that claim one DiffID: the honest image's and the attacker's.
var (
	realDiffID   = digest.FromString("the real base layer's tar")
	forgedDiffID = digest.FromString("the attacker's tar")
	honestBlob   = digest.FromString("honest blob")
	attackBlob   = digest.FromString("attacker's blob")
)

// layerLabels are Prepare's labels for blob at chainID, from image ref.
func layerLabels(chainID digest.Digest, blob digest.Digest, ref string) map[string]string {
	return map[string]string{
		labels.TargetSnapshotRef: chainID.String(),
		labels.ImageRef:          ref,
		labels.LayerDigest:       blob.String(),
		labels.TOCDigest:         digest.FromString("toc of " + blob.String()).String(),
	}
}

// proofEnv is a snapshotter on a fake remote whose Verify reports the
// digests set in diffIDs (by mount id) once release is closed, and tells
// the test through started that a proof began.
type proofEnv struct {
	s       *Snapshotter
	fr      *fakeRemote
	started chan string
	release chan struct{}
	diffIDs map[string]digest.Digest // by mount id
	blobs   map[string]digest.Digest // by mount id: what the registry serves
	fail    error
	// decompressErr is what Verify says of a blob whose DiffID is ""
	// (it does not decompress).
	decompressErr string
}

func newProofEnv(t *testing.T, opts ...Opt) *proofEnv {
	t.Helper()
	e := &proofEnv{
		fr:      newFakeRemote(),
		started: make(chan string, 10),
		release: make(chan struct{}),
		diffIDs: map[string]digest.Digest{},
		blobs:   map[string]digest.Digest{},
	}
	e.fr.verify = func(ctx context.Context, id string) (layer.BlobDigests, error) {
		e.started <- id
		select {
		case <-e.release:
		case <-ctx.Done():
			return layer.BlobDigests{}, ctx.Err()
		}
		e.fr.mu.Lock()
		defer e.fr.mu.Unlock()
		if e.fail != nil {
			return layer.BlobDigests{}, e.fail
		}
		return layer.BlobDigests{Digest: e.blobs[id], Size: 1, DiffID: e.diffIDs[id], UncompressedSize: 2, DecompressError: e.decompressErr}, nil
	}
	var err error
	e.s, err = New(testContext(t), t.TempDir(), append([]Opt{WithRemoteLayers(e.fr), noBackgroundProofs}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.s.Close() })
	return e
}

// mountLazily prepares a layer that is not stored yet and returns the id
// of its mount.
func (e *proofEnv) mountLazily(t *testing.T, key, parent string, lbls map[string]string, diffID digest.Digest) string {
	t.Helper()
	ctx := testContext(t)
	if _, err := e.s.Prepare(ctx, key, parent, snapshots.WithLabels(lbls)); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare %s: %v, want already exists", key, err)
	}
	e.fr.mu.Lock()
	defer e.fr.mu.Unlock()
	for id := range e.fr.mounted {
		if _, ok := e.diffIDs[id]; !ok {
			e.diffIDs[id] = diffID
			e.blobs[id] = digest.Digest(lbls[labels.LayerDigest])
			return id
		}
	}
	t.Fatalf("Prepare %s mounted nothing new", key)
	return ""
}

// prepareAsync runs Prepare in the background and returns its result.
func (e *proofEnv) prepareAsync(t *testing.T, key, parent string, lbls map[string]string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := e.s.Prepare(testContext(t), key, parent, snapshots.WithLabels(lbls))
		done <- err
	}()
	return done
}

// containerdLookup finds the snapshot at chainID on parent as containerd
// does after ErrAlreadyExists: the first committed one a Walk on the ref
// label and the parent yields (core/metadata/snapshot.go).
func (e *proofEnv) containerdLookup(t *testing.T, chainID digest.Digest, parent string) snapshots.Info {
	t.Helper()
	var found *snapshots.Info
	filter := fmt.Sprintf(`labels."containerd.io/snapshot.ref"==%s,parent==%q`, chainID, parent)
	err := e.s.Walk(testContext(t), func(_ context.Context, i snapshots.Info) error {
		if found == nil && i.Kind == snapshots.KindCommitted {
			found = &i
		}
		return nil
	}, filter)
	if err != nil {
		t.Fatal(err)
	}
	if found == nil {
		t.Fatalf("containerd would find no snapshot at %s on %q", chainID, parent)
	}
	return *found
}

// TestPrepareOtherBlobWaitsForProof: a Prepare that meets another blob at
// an existing chain ID waits for the stored layer's proof; proven, it is
// answered "already exists" (the same DiffID compressed otherwise) and the
// proof is kept, so the next one does not fetch the blob again. The chain
// ID of a layer on a parent checks the relation on the parent's chain ID.
func TestPrepareOtherBlobWaitsForProof(t *testing.T) {
	for _, onParent := range []bool{false, true} {
		t.Run(fmt.Sprintf("on parent %v", onParent), func(t *testing.T) {
			e := newProofEnv(t)
			parent, parentChain := "", digest.Digest("")
			if onParent {
				parentChain = digest.FromString("base diff id")
				e.mountLazily(t, "extract-0", "", layerLabels(parentChain, digest.FromString("base blob"), "reg/base:1"), parentChain)
				parent = parentChain.String()
			}
			chainID := labels.ChainID(parentChain, realDiffID)
			stored := e.mountLazily(t, "extract-1", parent, layerLabels(chainID, honestBlob, "reg/a:1"), realDiffID)

			done := e.prepareAsync(t, "extract-2", parent, layerLabels(chainID, attackBlob, "reg/b:1"))
			if id := receive(t, e.started, "the stored layer's proof"); id != stored {
				t.Fatalf("proof of mount %s, want the stored one %s", id, stored)
			}
			select {
			case err := <-done:
				t.Fatalf("Prepare returned before the proof: %v", err)
			default:
			}
			close(e.release)
			if err := receive(t, done, "Prepare after the proof"); !errdefs.IsAlreadyExists(err) {
				t.Fatalf("Prepare after a proof: %v, want already exists", err)
			}
			info := e.containerdLookup(t, chainID, parent)
			if info.Labels[labels.Verified] != realDiffID.String() || info.Labels[labels.LayerDigest] != honestBlob.String() {
				t.Errorf("stored snapshot after its proof: %v, want verified %s", info.Labels, realDiffID)
			}
			if v := e.fr.verdicts[stored]; v.forged || v.diffID != realDiffID {
				t.Errorf("worker told %+v, want verified %s", v, realDiffID)
			}
			// Proven once: the next other blob is answered from the label.
			if _, err := e.s.Prepare(testContext(t), "extract-3", parent, snapshots.WithLabels(layerLabels(chainID, attackBlob, "reg/c:1"))); !errdefs.IsAlreadyExists(err) {
				t.Fatalf("Prepare after the proof was kept: %v", err)
			}
			if e.fr.verifies != 1 || len(e.fr.mounted) != 1+btoi(onParent) {
				t.Errorf("%d proofs and mounts %v, want one proof and no new mount", e.fr.verifies, e.fr.mounted)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestPrepareForgedLayerIsQuarantined is the attack of issue 14: the stored
// layer (the attacker's, pulled first) claims the real DiffID and has
// another. The proof fails: the incident is counted, the stored snapshot
// is marked forged and loses its ref label, and the requester gets its own
// blob, which is what containerd's lookup then finds, never the stored one.
func TestPrepareForgedLayerIsQuarantined(t *testing.T) {
	e := newProofEnv(t)
	chainID := realDiffID // a base layer
	forged := e.mountLazily(t, "extract-1", "", layerLabels(chainID, attackBlob, "reg/attacker:1"), forgedDiffID)
	before := counterValue(t, metrics.ForgedLayers)

	close(e.release)
	if _, err := e.s.Prepare(testContext(t), "extract-2", "", snapshots.WithLabels(layerLabels(chainID, honestBlob, "reg/honest:1"))); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare of the honest layer: %v, want already exists (its own blob mounted)", err)
	}
	if got := counterValue(t, metrics.ForgedLayers) - before; got != 1 {
		t.Errorf("lazyfs_forged_layers_total grew by %v, want 1", got)
	}
	if len(e.fr.mounted) != 2 {
		t.Fatalf("mounts %v, want the forged one and the requester's own", e.fr.mounted)
	}
	if v := e.fr.verdicts[forged]; !v.forged || v.diffID != forgedDiffID {
		t.Errorf("worker told %+v, want forged with %s", v, forgedDiffID)
	}

	got := e.containerdLookup(t, chainID, "")
	if got.Labels[labels.LayerDigest] != honestBlob.String() {
		t.Fatalf("containerd would use %s (labels %v), want the requester's own blob %s", got.Name, got.Labels, honestBlob)
	}
	stored, err := e.s.Stat(testContext(t), chainID.String())
	if err != nil {
		t.Fatal(err)
	}
	if stored.Labels[labels.Forged] != forgedDiffID.String() || stored.Labels[labels.ClaimedRef] != chainID.String() || stored.Labels[labels.TargetSnapshotRef] != "" {
		t.Errorf("forged snapshot's labels %v, want forged=%s, claimed-ref=%s and no ref", stored.Labels, forgedDiffID, chainID)
	}

	// The same honest image again (another namespace) reuses its own
	// blob without a proof; the attacker's again gets the honest layer,
	// once proven.
	if _, err := e.s.Prepare(testContext(t), "extract-3", "", snapshots.WithLabels(layerLabels(chainID, honestBlob, "reg/honest:1"))); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare of the honest layer again: %v", err)
	}
	if e.fr.verifies != 1 || len(e.fr.mounted) != 2 {
		t.Errorf("%d proofs and mounts %v after the same blob again, want 1 proof and 2 mounts", e.fr.verifies, e.fr.mounted)
	}
}

// TestPrepareProofTimeout: a proof that takes longer than the bound fails
// the Prepare with a clear, retryable error and leaves nothing behind; the
// proof goes on, and its outcome is kept for the retry.
func TestPrepareProofTimeout(t *testing.T) {
	e := newProofEnv(t, WithProofWait(10*time.Millisecond))
	chainID := realDiffID
	stored := e.mountLazily(t, "extract-1", "", layerLabels(chainID, honestBlob, "reg/a:1"), realDiffID)

	_, err := e.s.Prepare(testContext(t), "extract-2", "", snapshots.WithLabels(layerLabels(chainID, attackBlob, "reg/b:1")))
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("Prepare while the proof runs: %v, want unavailable", err)
	}
	t.Logf("error: %v", err)
	if _, err := e.s.Stat(testContext(t), "extract-2"); !errdefs.IsNotFound(err) {
		t.Errorf("the failed Prepare left its key: %v", err)
	}
	e.fr.mu.Lock()
	e.fr.verdictSet = make(chan string, 1)
	e.fr.mu.Unlock()
	receive(t, e.started, "the proof")
	close(e.release)
	if id := receive(t, e.fr.verdictSet, "the verdict"); id != stored {
		t.Fatalf("verdict on mount %s, want %s", id, stored)
	}
	// The retry finds the proof kept; it never mounts the other blob.
	if _, err := e.s.Prepare(testContext(t), "extract-2", "", snapshots.WithLabels(layerLabels(chainID, attackBlob, "reg/b:1"))); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("retried Prepare: %v, want already exists", err)
	}
	if len(e.fr.mounted) != 1 || e.fr.verifies != 1 {
		t.Errorf("mounts %v and %d proofs, want the stored mount and one proof", e.fr.mounted, e.fr.verifies)
	}
}

// TestPrepareProofError: a proof that cannot be made (registry down, or it
// serves other bytes than the layer's digest) is no verdict: the Prepare
// fails clearly, nothing is recorded, and the next Prepare tries again.
func TestPrepareProofError(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(e *proofEnv, stored string)
	}{
		{"registry down", func(e *proofEnv, _ string) { e.fail = fmt.Errorf("registry down: %w", errdefs.ErrUnavailable) }},
		{"registry serves other bytes", func(e *proofEnv, stored string) { e.blobs[stored] = digest.FromString("other bytes") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newProofEnv(t)
			chainID := realDiffID
			stored := e.mountLazily(t, "extract-1", "", layerLabels(chainID, attackBlob, "reg/a:1"), forgedDiffID)
			e.fr.mu.Lock()
			tc.set(e, stored)
			e.fr.mu.Unlock()
			close(e.release)
			_, err := e.s.Prepare(testContext(t), "extract-2", "", snapshots.WithLabels(layerLabels(chainID, honestBlob, "reg/b:1")))
			if err == nil || errdefs.IsAlreadyExists(err) {
				t.Fatalf("Prepare with no proof: %v, want an error", err)
			}
			t.Logf("error: %v", err)
			info := e.containerdLookup(t, chainID, "")
			if _, ok := recordedProof(info); ok || len(e.fr.mounted) != 1 {
				t.Errorf("after a failed proof: labels %v, mounts %v; want nothing recorded nor mounted", info.Labels, e.fr.mounted)
			}
			if _, err := e.s.Prepare(testContext(t), "extract-2", "", snapshots.WithLabels(layerLabels(chainID, honestBlob, "reg/b:1"))); err == nil || e.fr.verifies != 2 {
				t.Errorf("second Prepare: %v after %d proofs, want a second proof", err, e.fr.verifies)
			}
		})
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestRestoreResendsVerdicts: after a restart the layers are mounted again
// by workers that know nothing of earlier proofs; the kept verdicts are
// sent to them, so that snapshotterctl keeps showing them.
func TestRestoreResendsVerdicts(t *testing.T) {
	e := newProofEnv(t)
	chainID := realDiffID
	stored := e.mountLazily(t, "extract-1", "", layerLabels(chainID, honestBlob, "reg/a:1"), realDiffID)
	close(e.release)
	if _, err := e.s.Prepare(testContext(t), "extract-2", "", snapshots.WithLabels(layerLabels(chainID, attackBlob, "reg/b:1"))); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare: %v", err)
	}
	e.fr.mu.Lock()
	e.fr.verdicts = map[string]verdict{}
	e.fr.verdictSet = make(chan string, 1)
	e.fr.mu.Unlock()

	if err := e.s.Restore(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if id := receive(t, e.fr.verdictSet, "the verdict told again"); id != stored {
		t.Fatalf("verdict resent for %s, want %s", id, stored)
	}
	if v := e.fr.verdicts[stored]; v.forged || v.diffID != realDiffID {
		t.Errorf("resent verdict %+v, want verified %s", v, realDiffID)
	}
}

// TestPrepareRaceWithAnotherBlob: while one Prepare mounts its blob, another
// commits a different blob at the same chain ID. The first must not take
// the other's snapshot as its own: it fails with a retryable error (a
// retry proves the stored blob first) and leaves nothing mounted.
func TestPrepareRaceWithAnotherBlob(t *testing.T) {
	e := newProofEnv(t)
	chainID := realDiffID
	var nested error
	e.fr.onMount = func(string) {
		e.fr.onMount = nil // only the outer Prepare's mount runs the other
		_, nested = e.s.Prepare(testContext(t), "extract-other", "", snapshots.WithLabels(layerLabels(chainID, attackBlob, "reg/b:1")))
	}
	_, err := e.s.Prepare(testContext(t), "extract-1", "", snapshots.WithLabels(layerLabels(chainID, honestBlob, "reg/a:1")))
	if !errdefs.IsAlreadyExists(nested) {
		t.Fatalf("the other Prepare: %v, want already exists", nested)
	}
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("Prepare that lost the race to another blob: %v, want unavailable", err)
	}
	t.Logf("error: %v", err)
	if len(e.fr.mounted) != 1 || len(e.fr.unmounted) != 1 {
		t.Errorf("mounted %v, unmounted %v: want only the winner's mount left", e.fr.mounted, e.fr.unmounted)
	}
	if got := e.containerdLookup(t, chainID, ""); got.Labels[labels.LayerDigest] != attackBlob.String() {
		t.Errorf("containerd would find %v", got.Labels)
	}
}

// noBackgroundProofs leaves a test with the proofs of point 0 only (a
// Prepare that meets another blob): no background proof, no container
// waits. The tests of background.go and gate.go turn them on.
var noBackgroundProofs = WithVerify(VerifyBackground, 0)

// TestPrepareRaceWithTheSameBlob: a Prepare that loses the race for a
// chain ID to the same blob (layer and TOC digest) uses the winner's
// snapshot (already exists); one with the same layer digest but another
// TOC is another layer description, proven first (unavailable).
func TestPrepareRaceWithTheSameBlob(t *testing.T) {
	otherTOC := layerLabels(realDiffID, honestBlob, "reg/b:1")
	otherTOC[labels.TOCDigest] = digest.FromString("another toc").String()
	for _, tc := range []struct {
		name   string
		winner map[string]string
		check  func(error) bool
	}{
		{"same blob", layerLabels(realDiffID, honestBlob, "reg/b:1"), errdefs.IsAlreadyExists},
		{"same layer digest, another TOC", otherTOC, errdefs.IsUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newProofEnv(t)
			var nested error
			e.fr.onMount = func(string) {
				e.fr.onMount = nil
				_, nested = e.s.Prepare(testContext(t), "extract-other", "", snapshots.WithLabels(tc.winner))
			}
			_, err := e.s.Prepare(testContext(t), "extract-1", "", snapshots.WithLabels(layerLabels(realDiffID, honestBlob, "reg/a:1")))
			if !errdefs.IsAlreadyExists(nested) {
				t.Fatalf("the winning Prepare: %v, want already exists", nested)
			}
			if !tc.check(err) {
				t.Fatalf("the losing Prepare: %v", err)
			}
			if len(e.fr.mounted) != 1 || len(e.fr.unmounted) != 1 {
				t.Errorf("mounted %v, unmounted %v: want only the winner's mount left", e.fr.mounted, e.fr.unmounted)
			}
		})
	}
}

// TestPrepareReusesOnlyTheSameBlob: a stored layer answers a Prepare at
// once only when both its layer digest and its TOC digest are the
// requester's; one differing digest (either of them) is another layer
// description, and the stored layer is proven first.
func TestPrepareReusesOnlyTheSameBlob(t *testing.T) {
	stored := layerLabels(realDiffID, honestBlob, "reg/a:1")
	otherTOC := layerLabels(realDiffID, honestBlob, "reg/b:1")
	otherTOC[labels.TOCDigest] = digest.FromString("another toc").String()
	otherBlob := layerLabels(realDiffID, attackBlob, "reg/b:1")
	otherBlob[labels.TOCDigest] = stored[labels.TOCDigest]
	for _, tc := range []struct {
		name  string
		lbls  map[string]string
		proof bool
	}{
		{"same blob", layerLabels(realDiffID, honestBlob, "reg/b:1"), false},
		{"same layer digest, another TOC", otherTOC, true},
		{"another layer digest, same TOC", otherBlob, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newProofEnv(t)
			id := e.mountLazily(t, "extract-1", "", stored, realDiffID)
			done := e.prepareAsync(t, "extract-2", "", tc.lbls)
			if !tc.proof {
				if err := receive(t, done, "Prepare"); !errdefs.IsAlreadyExists(err) {
					t.Fatalf("Prepare of the same blob: %v, want already exists at once", err)
				}
				if e.fr.verifies != 0 {
					t.Fatalf("the same blob was proven (%d proofs)", e.fr.verifies)
				}
				return
			}
			if got := receive(t, e.started, "the stored layer's proof"); got != id {
				t.Fatalf("proof of %s, want the stored %s", got, id)
			}
			select {
			case err := <-done:
				t.Fatalf("Prepare answered before the proof: %v", err)
			default:
			}
			close(e.release)
			if err := receive(t, done, "Prepare after the proof"); !errdefs.IsAlreadyExists(err) {
				t.Fatalf("Prepare after the proof: %v, want already exists", err)
			}
		})
	}
}
