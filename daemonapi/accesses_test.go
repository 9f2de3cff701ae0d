package daemonapi_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// recordingBackend is a fakeBackend that records accesses.
type recordingBackend struct {
	fakeBackend
	files []string
}

func (b *recordingBackend) Accesses(ctx context.Context, mountID string) (daemonapi.Accesses, error) {
	return daemonapi.Accesses{MountID: mountID, LayerDigest: layerDigest, Files: b.files}, b.record(ctx, "accesses "+mountID)
}

func (b *recordingBackend) ResetAccesses(ctx context.Context, mountID string) error {
	return b.record(ctx, "reset "+mountID)
}

// TestAccesses: the record crosses the API in order; malformed mount ids
// never reach the backend; a backend without a recorder is "not
// implemented".
func TestAccesses(t *testing.T) {
	ctx := testContext(t)
	b := &recordingBackend{files: []string{"usr/bin/app", "etc/app.conf", "usr/lib/libc.so"}}
	c, _ := startAPI(t, b)
	got, err := c.Accesses(ctx, "12")
	if err != nil || !slices.Equal(got.Files, b.files) || got.MountID != "12" || got.Truncated {
		t.Fatalf("Accesses = %+v, %v", got, err)
	}
	if err := c.ResetAccesses(ctx, "12"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Accesses(ctx, "-bad"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("malformed mount id: %v, want invalid argument", err)
	}
	if calls, _ := b.recorded(); !slices.Equal(calls, []string{"accesses 12", "reset 12"}) {
		t.Errorf("calls reaching the backend: %q", calls)
	}

	plain, _ := startAPI(t, &fakeBackend{})
	if _, err := plain.Accesses(ctx, "12"); !errdefs.IsNotImplemented(err) {
		t.Errorf("Accesses of a backend without a recorder: %v, want not implemented", err)
	}
	if err := plain.ResetAccesses(ctx, "12"); !errdefs.IsNotImplemented(err) {
		t.Errorf("ResetAccesses of a backend without a recorder: %v, want not implemented", err)
	}
}

// TestAccessesBound pins MaxAccesses at its edge: a record of exactly
// MaxAccesses files crosses whole, one more is cut and marked truncated.
func TestAccessesBound(t *testing.T) {
	ctx := testContext(t)
	files := make([]string, daemonapi.MaxAccesses+1)
	for i := range files {
		files[i] = fmt.Sprintf("f/%d", i)
	}
	b := &recordingBackend{files: files[:daemonapi.MaxAccesses]}
	c, _ := startAPI(t, b)
	got, err := c.Accesses(ctx, "1")
	if err != nil || len(got.Files) != daemonapi.MaxAccesses || got.Truncated {
		t.Fatalf("at the bound: %d files, truncated %v, %v", len(got.Files), got.Truncated, err)
	}
	b.files = files
	got, err = c.Accesses(ctx, "1")
	if err != nil || len(got.Files) != daemonapi.MaxAccesses || !got.Truncated || got.Files[len(got.Files)-1] != files[daemonapi.MaxAccesses-1] {
		t.Fatalf("over the bound: %d files, truncated %v, %v", len(got.Files), got.Truncated, err)
	}
}
