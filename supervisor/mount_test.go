package supervisor

import (
	"context"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/layer"
)

// TestMountRefusesAnInvalidLayer guards Mount's check of its layer: one
// read back from workers.db that could not be parsed (the zero layer) or a
// caller's mistake is refused before any worker is spawned or anything is
// mounted.
func TestMountRefusesAnInvalidLayer(t *testing.T) {
	s := &Supervisor{}
	err := s.Mount(context.Background(), "m1", "/nonexistent/m1", layer.Layer{})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Mount of the zero layer = %v, want invalid argument", err)
	}
}
