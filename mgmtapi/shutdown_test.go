package mgmtapi

import (
	"net/http"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
)

func TestShutdownRequest(t *testing.T) {
	b := &fakeBackend{}
	c, _ := serve(t, b)
	ctx := t.Context()
	if res, err := c.Shutdown(ctx, false); err != nil || res.UnmountAll || res.PID != 4242 {
		t.Fatalf("Shutdown = %+v, %v; want the backend's pid", res, err)
	}
	if res, err := c.Shutdown(ctx, true); err != nil || !res.UnmountAll {
		t.Fatalf("Shutdown(unmountAll) = %+v, %v", res, err)
	}
	b.mu.Lock()
	got := slices.Clone(b.shutdowns)
	b.mu.Unlock()
	if !slices.Equal(got, []bool{false, true}) {
		t.Errorf("backend got shutdowns %v, want [false true]", got)
	}
	// Only POST, and only a boolean.
	var res Shutdown
	if err := c.do(ctx, http.MethodPost, PathShutdown+"?unmount_all=yes", &res); !errdefs.IsInvalidArgument(err) {
		t.Errorf("unmount_all=yes: %v, want invalid argument", err)
	}
	if err := c.do(ctx, http.MethodGet, PathShutdown, &res); err == nil {
		t.Error("GET shutdown accepted")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.shutdowns) != 2 {
		t.Errorf("refused requests reached the backend: %v", b.shutdowns)
	}
}
