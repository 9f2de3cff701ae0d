package worker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containerd/log/logtest"

	"github.com/lazyfs/lazyfs/chunks"
	"github.com/lazyfs/lazyfs/remote"
	"github.com/lazyfs/lazyfs/toc"
	"github.com/lazyfs/lazyfs/worker"
)

// TestLoadHoldsBackgroundWork: while a layer loads (a pull waits on it),
// background work that yields to a container's reads (a layer's proof)
// stands aside for the load too; once the load ended, it goes on.
func TestLoadHoldsBackgroundWork(t *testing.T) {
	e := newEnv(t)
	sched := chunks.NewScheduler(chunks.SchedulerOptions{})
	ctx := logtest.WithT(context.Background(), t)
	w, err := worker.New(ctx, worker.Options{
		ID:         "test",
		Root:       e.root,
		Resolver:   remote.NewResolver(remote.Options{ReadTimeout: 3 * time.Second}),
		Limits:     toc.DefaultLimits(),
		Chunks:     chunks.Options{Scheduler: sched},
		AttachWait: testTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	registry, _, _ := strings.Cut(e.reg.Ref("v1"), "/")

	e.reg.Hold()
	loaded := make(chan error, 1)
	go func() {
		lctx, cancel := testContext(t)
		defer cancel()
		_, err := w.LoadLayer(lctx, e.request("m1", ""))
		loaded <- err
	}()
	select {
	case <-e.reg.Stalled():
	case <-time.After(testTimeout):
		t.Fatal("the load never asked the registry")
	}
	// The load waits on the registry: a background stream that yields
	// with no quiet period at all must still wait.
	yctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = sched.YieldToForeground(yctx, registry, 0, testTimeout)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("background work went on while a layer loaded: yield returned %v", err)
	}

	e.reg.Release()
	if err := <-loaded; err != nil {
		t.Fatalf("LoadLayer: %v", err)
	}
	yctx, cancel = context.WithTimeout(ctx, testTimeout)
	defer cancel()
	if err := sched.YieldToForeground(yctx, registry, 0, testTimeout); err != nil {
		t.Errorf("background work still held after the load ended: %v", err)
	}
}
