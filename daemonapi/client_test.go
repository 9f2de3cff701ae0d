package daemonapi_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/daemonapi"
)

func TestClientDialFailure(t *testing.T) {
	checkLeaks(t)
	path := filepath.Join(shortDir(t), "api.sock")
	c := daemonapi.NewClient(path, "w9")
	defer c.Close()
	ctx := testContext(t)
	_, err := c.Info(ctx)
	if !errdefs.IsUnavailable(err) {
		t.Errorf("Info() = %v, want unavailable", err)
	}
	if prefix := "worker w9 (" + path + "): info: "; err == nil || !strings.HasPrefix(err.Error(), prefix) {
		t.Errorf("error %v does not start with %q", err, prefix)
	}
	if err := c.Health(ctx); !errdefs.IsUnavailable(err) {
		t.Errorf("Health() = %v, want unavailable", err)
	}
	// A cancelled call is the caller's doing, not the worker's.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Info(cctx); !errors.Is(err, context.Canceled) || errdefs.IsUnavailable(err) {
		t.Errorf("Info(cancelled) = %v, want canceled only", err)
	}
}
