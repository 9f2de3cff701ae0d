package worker

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/log/logtest"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/internal/testregistry"
	"github.com/lazyfs/lazyfs/remote"
	"github.com/lazyfs/lazyfs/toc"
)

// TestAheadBudget pins the bound on the bytes held for layers not claimed
// yet at its edge: below the budget a layer is resolved ahead, at it the
// next one is not (its own load then fetches it).
func TestAheadBudget(t *testing.T) {
	ctx, cancel := context.WithTimeout(logtest.WithT(context.Background(), t), 30*time.Second)
	defer cancel()
	reg := testregistry.New(t, "lazyfs/ahead")
	one, two := testregistry.BuildLayer(t, "one"), testregistry.BuildLayer(t, "two")
	reg.AddBlob(one.Blob)
	reg.AddBlob(two.Blob)
	res := remote.NewResolver(remote.Options{})
	lim := toc.DefaultLimits()

	a := newAhead()
	a.start(ctx, res, reg.Ref("v1"), []digest.Digest{one.Digest}, DefaultTOCTailBytes, lim)
	waitResolved(t, a, one.Digest)
	held := a.held()
	if held == 0 {
		t.Fatal("nothing held for the layer resolved ahead")
	}

	for _, tc := range []struct {
		budget int64
		ahead  bool
	}{{held + 1, true}, {held, false}} {
		a.mu.Lock()
		a.budget = tc.budget
		a.mu.Unlock()
		a.start(ctx, res, reg.Ref("v1"), []digest.Digest{two.Digest}, DefaultTOCTailBytes, lim)
		a.mu.Lock()
		_, started := a.entries[two.Digest]
		a.mu.Unlock()
		if started != tc.ahead {
			t.Errorf("budget %d with %d bytes held: resolved ahead %v, want %v", tc.budget, held, started, tc.ahead)
		}
		if started {
			waitResolved(t, a, two.Digest)
			if _, _, ok := a.take(ctx, two.Digest); !ok {
				t.Fatal("take of a layer resolved ahead failed")
			}
		}
	}
	// A claimed layer is gone: its bytes are the load's now.
	if _, _, ok := a.take(ctx, one.Digest); !ok {
		t.Fatal("take of the first layer failed")
	}
	if _, _, ok := a.take(ctx, one.Digest); ok {
		t.Error("a layer was claimed twice")
	}
	if n := a.held(); n != 0 {
		t.Errorf("%d bytes held after every layer was claimed", n)
	}
}

// TestAheadFailureLeavesNothing: a layer the registry does not have is not
// held (its load fetches it, and says why).
func TestAheadFailureLeavesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(logtest.WithT(context.Background(), t), 30*time.Second)
	defer cancel()
	reg := testregistry.New(t, "lazyfs/ahead")
	missing := digest.FromString("not in the registry")
	a := newAhead()
	a.start(ctx, remote.NewResolver(remote.Options{ReadTimeout: time.Second}), reg.Ref("v1"), []digest.Digest{missing}, DefaultTOCTailBytes, toc.DefaultLimits())
	if _, _, ok := a.take(ctx, missing); ok {
		t.Fatal("a layer that failed to resolve was handed out")
	}
	if n := a.held(); n != 0 {
		t.Errorf("%d bytes held for a failed layer", n)
	}
}

func (a *ahead) held() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.bytes
}

// waitResolved waits for d's resolution to end, bounded.
func waitResolved(t *testing.T, a *ahead, d digest.Digest) {
	t.Helper()
	a.mu.Lock()
	e := a.entries[d]
	a.mu.Unlock()
	if e == nil {
		t.Fatalf("layer %s not being resolved", d)
	}
	select {
	case <-e.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("layer %s not resolved in 20 s", d)
	}
	if e.err != nil {
		t.Fatalf("layer %s: %v", d, e.err)
	}
}
