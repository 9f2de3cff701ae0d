package snapshot

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/labels"
	"github.com/lazyfs/lazyfs/metrics"
)

// fakeIndex answers OtherBlobs with others (or err) and counts the calls.
type fakeIndex struct {
	mu     sync.Mutex
	others []string
	err    error
	calls  int
	// short: answer for one layer fewer than asked (a broken index).
	short bool
}

func (f *fakeIndex) OtherBlobs(_ context.Context, layers []ChainLayer) ([][]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	out := make([][]string, len(layers))
	for i := range out {
		out[i] = f.others
	}
	if f.short {
		out = out[:len(out)-1]
	}
	return out, f.err
}

// fakeRemover counts RemoveForged calls and reports inUse.
type fakeRemover struct {
	mu    sync.Mutex
	calls int
	inUse int
	call  chan struct{}
}

func (f *fakeRemover) RemoveForged(context.Context) (int, int, error) {
	f.mu.Lock()
	f.calls++
	inUse := f.inUse
	f.mu.Unlock()
	f.call <- struct{}{}
	return 0, inUse, nil
}

// containerAsync prepares a container's snapshot (no chain ID label) on
// parent in the background.
func (e *proofEnv) containerAsync(t *testing.T, key, parent string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := e.s.Prepare(testContext(t), key, parent)
		done <- err
	}()
	return done
}

// receive waits for a value of ch, bounded.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
		var zero T
		return zero
	}
}

// TestEveryLazyLayerIsProvenInTheBackground: point 1. A mounted layer's
// proof starts with nobody asking; its outcome lands in the labels.
func TestEveryLazyLayerIsProvenInTheBackground(t *testing.T) {
	e := newProofEnv(t, WithVerify(VerifyBackground, 1))
	e.fr.verdictSet = make(chan string, 1)
	id := e.mountLazily(t, "extract-1", "", layerLabels(realDiffID, honestBlob, "reg/a:1"), realDiffID)
	if got := receive(t, e.started, "background proof"); got != id {
		t.Fatalf("proof of %s, want %s", got, id)
	}
	close(e.release)
	receive(t, e.fr.verdictSet, "verdict")
	info, err := e.s.Stat(testContext(t), realDiffID.String())
	if err != nil {
		t.Fatal(err)
	}
	if info.Labels[labels.Verified] != realDiffID.String() {
		t.Errorf("labels after the background proof: %v, want verified %s", info.Labels, realDiffID)
	}
}

// TestBackgroundProofsAreBounded: with proof_concurrency 1, while one
// background proof runs, its slot is taken: no other may start.
func TestBackgroundProofsAreBounded(t *testing.T) {
	e := newProofEnv(t, WithVerify(VerifyBackground, 1))
	e.mountLazily(t, "extract-1", "", layerLabels(realDiffID, honestBlob, "reg/a:1"), realDiffID)
	other := digest.FromString("another base")
	e.mountLazily(t, "extract-2", "", layerLabels(other, attackBlob, "reg/b:1"), other)
	receive(t, e.started, "background proof")
	select {
	case e.s.background.slots <- struct{}{}:
		<-e.s.background.slots
		t.Fatal("a slot is free while a background proof runs with proof_concurrency 1")
	default:
	}
	close(e.release)
	receive(t, e.started, "the second background proof, once the first is done")

	if off := newBackgroundProofs(0); off.slots != nil {
		t.Error("proof_concurrency 0 still proves in the background")
	}
}

// TestBackgroundProofsOff: proof_concurrency 0 queues nothing.
func TestBackgroundProofsOff(t *testing.T) {
	e := newProofEnv(t, WithVerify(VerifyBackground, 0))
	e.mountLazily(t, "extract-1", "", layerLabels(realDiffID, honestBlob, "reg/a:1"), realDiffID)
	// A container on it does not wait either: nothing proves it.
	if err := receive(t, e.containerAsync(t, "c1", realDiffID.String()), "container Prepare"); err != nil {
		t.Fatal(err)
	}
	if e.fr.verifies != 0 {
		t.Errorf("%d proofs with background proofs off and verify = background", e.fr.verifies)
	}
}

// TestContainerGate: point 3, each mode, on a base layer whose proof the
// test controls. The container's Prepare waits for the proof when it must
// (and only then), and is refused when the layer is forged.
func TestContainerGate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mode   string
		index  *fakeIndex // nil: no image index
		forged bool
		wait   bool
	}{
		{"before-use waits", VerifyBeforeUse, nil, false, true},
		{"before-use refuses a forged layer", VerifyBeforeUse, nil, true, true},
		{"before-use waits when no other image reaches the layer", VerifyBeforeUse, &fakeIndex{}, false, true},
		{"an unknown mode is before-share: no wait when no other image reaches the layer", "sometimes", &fakeIndex{}, false, false},
		{"an unknown mode is before-share: waits when another image does", "sometimes", &fakeIndex{others: []string{"reg/honest:1"}}, false, true},
		{"before-share waits when another image reaches the layer", VerifyBeforeShare, &fakeIndex{others: []string{"reg/honest:1"}}, true, true},
		{"before-share does not wait when no other image does", VerifyBeforeShare, &fakeIndex{}, false, false},
		{"before-share waits when containerd cannot tell", VerifyBeforeShare, &fakeIndex{err: errors.New("containerd down")}, false, true},
		{"before-share waits without an image index", VerifyBeforeShare, nil, false, true},
		{"before-share waits when the index answers for fewer layers", VerifyBeforeShare, &fakeIndex{short: true}, false, true},
		{"background never waits", VerifyBackground, &fakeIndex{others: []string{"reg/honest:1"}}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := []Opt{WithVerify(tc.mode, 0)}
			if tc.index != nil {
				opts = append(opts, WithImageIndex(tc.index))
			}
			e := newProofEnv(t, opts...)
			diffID := realDiffID
			if tc.forged {
				diffID = forgedDiffID
			}
			e.mountLazily(t, "extract-1", "", layerLabels(realDiffID, attackBlob, "reg/attacker:1"), diffID)
			done := e.containerAsync(t, "c1", realDiffID.String())
			if !tc.wait {
				if err := receive(t, done, "container Prepare"); err != nil {
					t.Fatalf("container Prepare: %v, want no wait and no error", err)
				}
				if e.fr.verifies != 0 {
					t.Errorf("%d proofs, want none", e.fr.verifies)
				}
				return
			}
			receive(t, e.started, "the proof the container waits for")
			select {
			case err := <-done:
				t.Fatalf("container Prepare returned before the proof: %v", err)
			default:
			}
			close(e.release)
			err := receive(t, done, "container Prepare")
			if !tc.forged {
				if err != nil {
					t.Fatalf("container Prepare on a proven layer: %v", err)
				}
				return
			}
			if !errdefs.IsFailedPrecondition(err) {
				t.Fatalf("container Prepare on a forged layer: %v, want failed precondition", err)
			}
			for _, want := range []string{"reg/attacker:1", attackBlob.String(), realDiffID.String(), forgedDiffID.String()} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %s", err, want)
				}
			}
			if strings.Contains(err.Error(), "on parent") {
				t.Errorf("error %q names a parent of a base layer", err)
			}
			// Refused again without a new proof, whatever the mode.
			if _, err := e.s.Prepare(testContext(t), "c2", realDiffID.String()); !errdefs.IsFailedPrecondition(err) {
				t.Errorf("second container Prepare on the forged layer: %v", err)
			}
			if _, err := e.s.View(testContext(t), "v1", realDiffID.String()); !errdefs.IsFailedPrecondition(err) {
				t.Errorf("View of the forged layer: %v", err)
			}
			if e.fr.verifies != 1 {
				t.Errorf("%d proofs, want 1", e.fr.verifies)
			}
		})
	}
}

// TestContainerGateTimeout: a container does not wait longer than
// proof_wait; the error says why and is retryable.
func TestContainerGateTimeout(t *testing.T) {
	e := newProofEnv(t, WithVerify(VerifyBeforeUse, 0), WithProofWait(20*time.Millisecond))
	e.mountLazily(t, "extract-1", "", layerLabels(realDiffID, honestBlob, "reg/a:1"), realDiffID)
	before := counterValue(t, metrics.ProofWaits.WithLabelValues("timeout"))
	err := receive(t, e.containerAsync(t, "c1", realDiffID.String()), "container Prepare")
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "still being proven") {
		t.Fatalf("container Prepare past proof_wait: %v, want unavailable, still being proven", err)
	}
	if got := counterValue(t, metrics.ProofWaits.WithLabelValues("timeout")) - before; got != 1 {
		t.Errorf("lazyfs_layer_proof_waits_total{result=timeout} grew by %v, want 1", got)
	}
	if _, err := e.s.Stat(testContext(t), "c1"); !errdefs.IsNotFound(err) {
		t.Errorf("the refused Prepare left its snapshot: %v", err)
	}
	close(e.release)
}

// TestContainerGateChecksLowerLayers: an unproven layer below the parent
// is waited for too, with the chain ID on its own parent.
func TestContainerGateChecksLowerLayers(t *testing.T) {
	e := newProofEnv(t, WithVerify(VerifyBeforeUse, 0))
	base := digest.FromString("base diff id")
	e.mountLazily(t, "extract-0", "", layerLabels(base, digest.FromString("base blob"), "reg/a:1"), base)
	top := labels.ChainID(base, realDiffID)
	// An ordinary layer unpacked on it: not gated (it reads no bytes of
	// the lower layer's files).
	if _, err := e.s.Prepare(testContext(t), "extract-1", base.String(), snapshots.WithLabels(map[string]string{labels.TargetSnapshotRef: top.String()})); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Commit(testContext(t), top.String(), "extract-1"); err != nil {
		t.Fatal(err)
	}
	done := e.containerAsync(t, "c1", top.String())
	receive(t, e.started, "proof of the lower layer")
	close(e.release)
	if err := receive(t, done, "container Prepare"); err != nil {
		t.Fatal(err)
	}
}

// TestContainerGateStackedLazyLayers: a container on two lazy layers waits
// for both proofs; the upper one, forged, is refused naming the DiffID its
// image claimed through its chain ID on its parent's.
func TestContainerGateStackedLazyLayers(t *testing.T) {
	e := newProofEnv(t, WithVerify(VerifyBeforeUse, 0))
	base := digest.FromString("base diff id")
	e.mountLazily(t, "extract-0", "", layerLabels(base, digest.FromString("base blob"), "reg/a:1"), base)
	top := labels.ChainID(base, realDiffID)
	e.mountLazily(t, "extract-1", base.String(), layerLabels(top, attackBlob, "reg/attacker:1"), forgedDiffID)
	done := e.containerAsync(t, "c1", top.String())
	receive(t, e.started, "a proof")
	receive(t, e.started, "the other proof")
	select {
	case err := <-done:
		t.Fatalf("container Prepare returned before the proofs: %v", err)
	default:
	}
	close(e.release)
	err := receive(t, done, "container Prepare")
	want := "the DiffID of chain ID " + top.String() + " on parent " + base.String()
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), want) {
		t.Fatalf("container Prepare on a forged upper layer: %v, want failed precondition naming %q", err, want)
	}
	inc := e.s.Incidents()
	if len(inc) != 1 || inc[0].ClaimedDiffID != want || inc[0].ChainID != top.String() {
		t.Fatalf("incidents %+v, want one at %s claiming %q", inc, top, want)
	}
}

// TestUndecompressableLayerIsForged: a blob that does not decompress has
// no DiffID, so it cannot be the layer its chain ID names: forged, recorded
// as such (also across restarts), and the error and the incident say why.
func TestUndecompressableLayerIsForged(t *testing.T) {
	e := newProofEnv(t, WithVerify(VerifyBeforeUse, 0))
	e.decompressErr = "gzip: invalid header"
	e.mountLazily(t, "extract-1", "", layerLabels(realDiffID, attackBlob, "reg/attacker:1"), "")
	done := e.containerAsync(t, "c1", realDiffID.String())
	close(e.release)
	err := receive(t, done, "container Prepare")
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "its blob has "+labels.ForgedUndecompressable) {
		t.Fatalf("container Prepare on an undecompressable layer: %v, want failed precondition, blob %s", err, labels.ForgedUndecompressable)
	}
	inc := e.s.Incidents()
	if want := labels.ForgedUndecompressable + ": gzip: invalid header"; len(inc) != 1 || inc[0].ComputedDiffID != want || inc[0].ClaimedDiffID != realDiffID.String() {
		t.Fatalf("incidents %+v, want one computing %q, claiming %s", inc, want, realDiffID)
	}
	var forged snapshots.Info
	e.s.Walk(testContext(t), func(_ context.Context, i snapshots.Info) error {
		if _, ok := i.Labels[labels.Forged]; ok {
			forged = i
		}
		return nil
	})
	if forged.Labels[labels.Forged] != labels.ForgedUndecompressable || forged.Labels[labels.ClaimedRef] != realDiffID.String() ||
		forged.Labels[labels.TargetSnapshotRef] != "" {
		t.Fatalf("labels of the forged snapshot %v, want forged %s claiming %s and no ref label (containerd must not find it at the chain ID)", forged.Labels, labels.ForgedUndecompressable, realDiffID)
	}
	if p, ok := recordedProof(forged); !ok || !p.forged || p.diffID != "" {
		t.Fatalf("recorded proof read back as %+v, %v; want forged without DiffID", p, ok)
	}
}

// TestContainerGateUnknownParentChain: a lazy layer whose parent's chain
// ID cannot be told cannot be judged: a container on it is refused, not
// let through unchecked.
func TestContainerGateUnknownParentChain(t *testing.T) {
	e := newProofEnv(t, WithVerify(VerifyBeforeUse, 0))
	ctx := testContext(t)
	if _, err := e.s.Prepare(ctx, "extract-0", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Commit(ctx, "not-a-chain-id", "extract-0"); err != nil {
		t.Fatal(err)
	}
	e.mountLazily(t, "extract-1", "not-a-chain-id", layerLabels(realDiffID, honestBlob, "reg/a:1"), realDiffID)
	err := receive(t, e.containerAsync(t, "c1", realDiffID.String()), "container Prepare")
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "cannot tell its chain ID") {
		t.Fatalf("container Prepare on a layer whose parent's chain ID is unknown: %v, want failed precondition", err)
	}
	close(e.release)
}

// TestRestoreProvesUnprovenLayers: a layer not proven before a restart is
// proven after it.
func TestRestoreProvesUnprovenLayers(t *testing.T) {
	e := newProofEnv(t, WithVerify(VerifyBackground, 0))
	id := e.mountLazily(t, "extract-1", "", layerLabels(realDiffID, honestBlob, "reg/a:1"), realDiffID)
	e.s.background = newBackgroundProofs(1) // as the next run's New would
	if err := e.s.Restore(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, e.started, "proof after the restore"); got != id {
		t.Fatalf("proof of %s, want %s", got, id)
	}
	close(e.release)
}

// TestForgedSnapshotsRemovedOnceUnused: point 2. A forged verdict asks for
// the removal of forged snapshots; while one is in use, every later Remove
// asks again, and once none is, a Remove asks nothing.
func TestForgedSnapshotsRemovedOnceUnused(t *testing.T) {
	r := &fakeRemover{inUse: 1, call: make(chan struct{}, 10)}
	e := newProofEnv(t, WithVerify(VerifyBeforeUse, 0), WithForgedRemover(r))
	e.mountLazily(t, "extract-1", "", layerLabels(realDiffID, attackBlob, "reg/attacker:1"), forgedDiffID)
	done := e.containerAsync(t, "c1", realDiffID.String())
	close(e.release)
	if err := receive(t, done, "container Prepare"); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("container Prepare on a forged layer: %v", err)
	}
	receive(t, r.call, "removal after the forged verdict")

	ctx := testContext(t)
	removeOne := func(key string) {
		t.Helper()
		if _, err := e.s.Prepare(ctx, key, ""); err != nil {
			t.Fatal(err)
		}
		waitSweepIdle(t, e.s)
		if err := e.s.Remove(ctx, key); err != nil {
			t.Fatal(err)
		}
		waitSweepIdle(t, e.s)
	}
	r.mu.Lock()
	r.inUse = 0
	r.mu.Unlock()
	removeOne("other-1") // one still in use: asks again, none left
	receive(t, r.call, "removal after a Remove while one was in use")
	removeOne("other-2") // none in use: asks nothing
	select {
	case <-r.call:
		t.Error("a Remove asked for a removal with no forged snapshot left in use")
	default:
	}
}

// waitSweepIdle waits until no removal of forged snapshots runs.
func waitSweepIdle(t *testing.T, s *Snapshotter) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.sweep.mu.Lock()
		running := s.sweep.running
		s.sweep.mu.Unlock()
		if !running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("removal of forged snapshots still running after 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
