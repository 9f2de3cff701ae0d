package mgmtapi

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/log/logtest"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// recordingBackend is a fakeBackend whose mounts have access records.
type recordingBackend struct {
	*fakeBackend
	files  map[string][]string
	resets []string
}

func (r *recordingBackend) Accesses(_ context.Context, id string) (daemonapi.Accesses, error) {
	files, ok := r.files[id]
	if !ok {
		return daemonapi.Accesses{}, errdefs.ErrNotFound
	}
	return daemonapi.Accesses{MountID: id, Files: files}, nil
}

func (r *recordingBackend) ResetAccesses(_ context.Context, id string) error {
	r.resets = append(r.resets, id)
	return nil
}

// TestAccessesThroughManagementAPI: a mount's record reaches the client in
// order, a reset reaches the backend, a malformed id does not, and a
// snapshotter without records answers "not implemented".
func TestAccessesThroughManagementAPI(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	b := &recordingBackend{fakeBackend: &fakeBackend{}, files: map[string][]string{"7": {"bin/sh", "etc/passwd"}}}
	path := filepath.Join(shortDir(t), "run", "api.sock")
	srv, err := Listen(ctx, path, NewServer(b))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(ctx)
	c := NewClient(path)

	a, err := c.Accesses(ctx, "7")
	if err != nil || !slices.Equal(a.Files, []string{"bin/sh", "etc/passwd"}) {
		t.Fatalf("Accesses = %+v, %v", a, err)
	}
	if _, err := c.Accesses(ctx, "8"); !errdefs.IsNotFound(err) {
		t.Errorf("unknown mount: %v, want not found", err)
	}
	if err := c.ResetAccesses(ctx, "7"); err != nil || !slices.Equal(b.resets, []string{"7"}) {
		t.Errorf("ResetAccesses: %v, resets %q", err, b.resets)
	}
	if err := c.ResetAccesses(ctx, "-x"); !errdefs.IsInvalidArgument(err) || len(b.resets) != 1 {
		t.Errorf("malformed id: %v, resets %q", err, b.resets)
	}

	plain, _ := serve(t, &fakeBackend{})
	if _, err := plain.Accesses(ctx, "7"); !errdefs.IsNotImplemented(err) {
		t.Errorf("backend without records: %v, want not implemented", err)
	}
}
