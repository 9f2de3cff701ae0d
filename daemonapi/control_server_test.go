package daemonapi_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
)

func TestOneControllerAtATime(t *testing.T) {
	checkLeaks(t)
	path := startControl(t, closingHandler)
	first := dial(t, path)

	_, err := daemonapi.DialControl(testContext(t), path)
	if !errdefs.IsConflict(err) {
		t.Fatalf("second DialControl() error = %v, want conflict", err)
	}
	if !strings.Contains(err.Error(), "another controller") {
		t.Errorf("refusal %q does not say why", err)
	}
	// The first one is unaffected.
	r, _ := pipe(t)
	if _, err := first.Attach(testContext(t), daemonapi.AttachRequest{MountID: "m"}, r); err != nil {
		t.Fatal(err)
	}

	first.Close()
	select {
	case <-first.Done():
	default:
		t.Error("Done() is open after Close")
	}
	if _, err := first.Attach(testContext(t), daemonapi.AttachRequest{MountID: "m"}, r); !errdefs.IsUnavailable(err) {
		t.Errorf("Attach after Close: %v, want unavailable", err)
	}
	// Right after the first closes, with no pause: the worker must not
	// refuse a successor because it has not noticed the hang-up yet.
	for range 20 {
		c := dial(t, path)
		if _, err := c.Attach(testContext(t), daemonapi.AttachRequest{MountID: "m"}, r); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

func TestServeControlStops(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	path := socketPath(t, "control.sock")
	l, err := daemonapi.ListenControl(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	attaching := make(chan struct{})
	served := make(chan error, 1)
	go func() {
		served <- daemonapi.ServeControl(ctx, l, attachFunc(func(ctx context.Context, _ string, fd int) (failover.InitState, error) {
			close(attaching)
			<-ctx.Done()
			return failover.InitState{}, ctx.Err()
		}))
	}()
	c := dial(t, path)
	r, _ := pipe(t)
	attached := make(chan error, 1)
	go func() {
		_, err := c.Attach(context.Background(), daemonapi.AttachRequest{MountID: "m"}, r)
		attached <- err
	}()
	<-attaching
	cancel()
	if err := <-served; err != nil {
		t.Errorf("ServeControl() = %v", err)
	}
	// Either the worker's reply (canceled) or the closed connection
	// (unavailable) reaches the client first.
	if err := <-attached; !errdefs.IsUnavailable(err) && !errors.Is(err, context.Canceled) {
		t.Errorf("Attach in flight when the worker stopped: %v, want unavailable or canceled", err)
	}
	<-c.Done()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file after ServeControl returned: %v", err)
	}
	if _, err := daemonapi.DialControl(testContext(t), path); !errdefs.IsUnavailable(err) {
		t.Errorf("DialControl() after stop = %v, want unavailable", err)
	}
}
